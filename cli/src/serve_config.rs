//! `metalcast serve --config FILE`: every serve flag can live in a TOML
//! file. Each key is a flag's name without the dashes (`listen`,
//! `provision_addr`; `_` or `-`), a table prefixes its keys (`[netboot]`
//! `mode = "full"` is `--netboot-mode full`); a `true` boolean is the bare
//! flag, an array repeats it. The file's flags come first, so a flag given
//! on the command line wins (`serve` lets a flag override itself).

use std::ffi::OsString;
use std::path::Path;

/// Where `--config` points in `argv` (`serve` only), if anywhere.
fn config_path(argv: &[OsString]) -> Option<OsString> {
    if argv.get(1).is_none_or(|a| a != "serve") {
        return None;
    }
    let mut it = argv.iter().skip(2);
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if a == "--config" {
            return it.next().cloned();
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--config=")) {
            return Some(v.into());
        }
    }
    None
}

/// The flags a TOML document stands for, in file order.
pub fn flags(text: &str) -> Result<Vec<String>, String> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut out = Vec::new();
    add(&mut out, "", &doc)?;
    Ok(out)
}

fn add(out: &mut Vec<String>, prefix: &str, table: &toml::Table) -> Result<(), String> {
    for (k, v) in table {
        let name = format!("{prefix}{}", k.replace('_', "-"));
        if name == "config" {
            return Err("a config file cannot name another (`config`)".into());
        }
        match v {
            toml::Value::Table(t) => add(out, &format!("{name}-"), t)?,
            toml::Value::Array(items) => {
                for i in items {
                    out.push(format!("--{name}"));
                    out.push(scalar(&name, i)?);
                }
            }
            toml::Value::Boolean(true) => out.push(format!("--{name}")),
            toml::Value::Boolean(false) => {}
            other => {
                out.push(format!("--{name}"));
                out.push(scalar(&name, other)?);
            }
        }
    }
    Ok(())
}

fn scalar(name: &str, v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        other => Err(format!("`{name}`: a {} cannot be a flag's value", other.type_str())),
    }
}

/// `argv` with the flags of `serve --config FILE` put right after `serve`.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(path) = config_path(&argv) else { return Ok(argv) };
    let path = Path::new(&path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading config file {}: {e}", path.display()))?;
    let extra = flags(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
    let mut out: Vec<OsString> = argv[..2].to_vec();
    out.extend(extra.into_iter().map(OsString::from));
    out.extend(argv[2..].iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_prefix_and_arrays_repeat() {
        let f = flags(
            "listen = \"0.0.0.0:7000\"\nprovision_addr = \"10.0.0.1\"\ntrusted-key = [\"a.pub\", \"b.pub\"]\n\
             [netboot]\nmode = \"full\"\npool = \"10.0.0.100-10.0.0.150\"\nenroll = true\nlease_secs = 600\n\
             [market]\nfee_bps = 25\n",
        )
        .unwrap();
        assert_eq!(
            f,
            [
                "--listen",
                "0.0.0.0:7000",
                "--provision-addr",
                "10.0.0.1",
                "--trusted-key",
                "a.pub",
                "--trusted-key",
                "b.pub",
                "--netboot-mode",
                "full",
                "--netboot-pool",
                "10.0.0.100-10.0.0.150",
                "--netboot-enroll",
                "--netboot-lease-secs",
                "600",
                "--market-fee-bps",
                "25",
            ]
        );
        assert!(flags("x = [[1]]").unwrap_err().contains("`x`"));
        assert!(flags("config = \"other.toml\"").is_err());
        assert!(flags("listen = ").is_err(), "TOML syntax errors are reported");
    }

    #[test]
    fn config_flags_come_first_so_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, "listen = \"127.0.0.1:1\"\n").unwrap();
        let argv: Vec<OsString> = ["metalcast", "serve", "--config", p.to_str().unwrap(), "--listen", "127.0.0.1:2"]
            .iter()
            .map(OsString::from)
            .collect();
        let out = expand(argv).unwrap();
        let words: Vec<&str> = out.iter().map(|o| o.to_str().unwrap()).collect();
        assert_eq!(words[..4], ["metalcast", "serve", "--listen", "127.0.0.1:1"]);
        assert_eq!(words.last(), Some(&"127.0.0.1:2"));
        // Other commands are left alone; a missing file is an error naming it.
        let other: Vec<OsString> = ["metalcast", "node", "list", "--config", "x"].iter().map(OsString::from).collect();
        assert_eq!(expand(other.clone()).unwrap(), other);
        let missing: Vec<OsString> =
            ["metalcast", "serve", "--config", "/nonexistent/m.toml"].iter().map(OsString::from).collect();
        assert!(expand(missing).unwrap_err().contains("/nonexistent/m.toml"));
    }

    /// The example in `contrib/` is a valid `serve` configuration: every key names a real flag
    /// with a value of the right type, and the command line still wins.
    #[test]
    fn contrib_example_parses_as_serve_flags() {
        use clap::Parser;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/metalcast.toml");
        let argv: Vec<OsString> =
            ["metalcast", "serve", "--config", path, "--netboot-mode", "proxy"].iter().map(OsString::from).collect();
        let cli = crate::cli::Cli::try_parse_from(expand(argv).unwrap()).unwrap_or_else(|e| panic!("{e}"));
        let dbg = format!("{:?}", cli.command);
        assert!(dbg.starts_with("Serve {"), "{dbg}");
        for want in ["netboot_mode: Some(\"proxy\")", "netboot_enroll: true", "\"52:54:00:12:34:56=10.20.0.10\""] {
            assert!(dbg.contains(want), "{want} in {dbg}");
        }
    }
}
