-- Image registry, per-project quotas and SSH keypairs (issue 7).
-- Portable SQL, as in 0001: TEXT and BIGINT columns only.

-- A registered image bundle. The bundle file lives in the server's data
-- directory as images/<name>.mcb; the row exists only once the file has been
-- verified (signature and every chunk) and moved into place.
CREATE TABLE images (
    name TEXT PRIMARY KEY,
    -- Owning project; NULL for images an administrator registered for everyone.
    owner TEXT REFERENCES projects(name),
    -- public | private | shared
    visibility TEXT NOT NULL,
    root_hash TEXT NOT NULL,
    -- Bytes of the bundle file (what quotas count).
    stored_bytes BIGINT NOT NULL,
    -- Bytes of the image once extracted.
    data_bytes BIGINT NOT NULL,
    -- Hex public key of the trusted signer.
    signer TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX images_owner ON images(owner);

-- Projects a `shared` image is shared with.
CREATE TABLE image_members (
    image TEXT NOT NULL REFERENCES images(name) ON DELETE CASCADE,
    project TEXT NOT NULL REFERENCES projects(name),
    PRIMARY KEY (image, project)
);

-- Limits per project; a NULL column means unlimited, a missing row too.
CREATE TABLE quotas (
    project TEXT PRIMARY KEY REFERENCES projects(name) ON DELETE CASCADE,
    max_nodes BIGINT,
    max_images BIGINT,
    max_image_bytes BIGINT
);

-- SSH public keys of a user, optionally shared with one of the user's projects.
CREATE TABLE keypairs (
    owner_user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    project TEXT REFERENCES projects(name),
    public_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (owner_user, name)
);
