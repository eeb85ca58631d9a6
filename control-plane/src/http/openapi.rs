//! What the `/v0` and `/v1` OpenAPI documents share: the security
//! schemes and the error body on every operation.

/// Names of the security schemes: `Authorization: Bearer mct_...` and HTTP Basic.
const SCHEMES: [&str; 2] = ["bearer", "basic"];

/// Declares the two ways to authenticate (either one; `health` needs
/// none), and gives every error status an [`ErrorBody`]: each declared
/// 4xx/5xx without a body gets it, and `default` stands for the error
/// statuses an operation does not list (400 for a bad body, 401, 403,
/// 413, 500, 503 while shutting down...).
pub(crate) fn finish(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(SCHEMES[0], SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    components.add_security_scheme(SCHEMES[1], SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    doc.security = Some(SCHEMES.iter().map(|s| SecurityRequirement::new(*s, Vec::<String>::new())).collect());

    let error = || ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    for item in doc.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            // Raw uploads are bytes, not a JSON string.
            if let Some(c) = op.request_body.as_mut().and_then(|b| b.content.get_mut("application/octet-stream")) {
                c.schema = Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                        .into(),
                );
            }
            if op.operation_id.as_deref() == Some("health") {
                op.security = Some(vec![SecurityRequirement::default()]);
            }
            for (status, resp) in &mut op.responses.responses {
                let utoipa::openapi::RefOr::T(resp) = resp else { continue };
                if status.starts_with(['4', '5']) && resp.content.is_empty() {
                    resp.content.insert("application/json".into(), error());
                }
            }
            op.responses.responses.insert(
                "default".into(),
                ResponseBuilder::new()
                    .description("error (see `type` and `msg`)")
                    .content("application/json", error())
                    .build()
                    .into(),
            );
        }
    }
}
