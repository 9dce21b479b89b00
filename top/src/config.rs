//! The config file (`$XDG_CONFIG_HOME/bakery/top.toml`): which collector or cluster, and the colours, where neither the command line nor the environment says.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::ColorChoice;
use crate::render::theme::Palette;

/// The file's settings; each one is what the flag of the same name would say.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TopConfig {
    pub collector: Option<String>,
    pub token_file: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    /// A kubeconfig context; `""`: the current one.
    pub context: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub namespace: Option<String>,
    pub release: Option<String>,
    pub color: Option<ColorChoice>,
    /// Colours by meaning, replacing the defaults one by one.
    #[serde(default)]
    pub colors: Palette,
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {} is not valid: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// Where the file is unless `--config` says: `$XDG_CONFIG_HOME/bakery/top.toml`, or
/// `~/.config/bakery/top.toml` when XDG_CONFIG_HOME is unset, empty or relative (which the XDG
/// rules say to ignore). `None` without either variable.
pub fn default_path(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let base = match xdg_config_home.map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => PathBuf::from(home.filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("bakery").join("top.toml"))
}

/// Reads the config file at `path`. A missing file is no config when the path is the default
/// (`explicit` false), and an error when the user named it.
pub fn load(path: &Path, explicit: bool) -> Result<Option<TopConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
        Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
    };
    let mut config = parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_path_buf(), message })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for file in [&mut config.token_file, &mut config.tls_ca, &mut config.kubeconfig].into_iter().flatten() {
        *file = resolve(file, dir, home.as_deref());
    }
    Ok(Some(config))
}

/// The settings in `text`; the message says which line is wrong and why.
pub fn parse(text: &str) -> Result<TopConfig, String> {
    toml::from_str(text).map_err(|error| error.to_string().trim_end().to_string())
}

/// A path in the file: `~/` is the home directory, and a relative path is relative to the file
/// (so the file means the same whatever directory bakery-top starts in).
fn resolve(path: &Path, dir: &Path, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix("~"), home) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lives_under_xdg_config_home_or_the_home_directory() {
        let path = |xdg: Option<&str>, home: Option<&str>| default_path(xdg.map(Into::into), home.map(Into::into));
        assert_eq!(path(Some("/cfg"), Some("/h/ada")), Some(PathBuf::from("/cfg/bakery/top.toml")));
        assert_eq!(path(None, Some("/h/ada")), Some(PathBuf::from("/h/ada/.config/bakery/top.toml")));
        assert_eq!(
            path(Some("relative"), Some("/h/ada")),
            Some(PathBuf::from("/h/ada/.config/bakery/top.toml")),
            "a relative XDG_CONFIG_HOME is ignored"
        );
        assert_eq!(path(Some(""), None), None);
    }

    #[test]
    fn every_setting_reads_and_a_mistake_names_its_line() {
        let text = "context = \"pi\"\nnamespace = \"bakery\"\nrelease = \"prod\"\ncolor = \"never\"\n\
                    token-file = \"read-token\"\n[colors]\nbad = \"magenta\"\n";
        let config = parse(text).unwrap();
        assert_eq!(config.context.as_deref(), Some("pi"));
        assert_eq!(config.color, Some(ColorChoice::Never));
        assert_eq!(config.release.as_deref(), Some("prod"));
        assert_eq!(config.colors.bad, Some(ratatui::style::Color::Magenta));
        let error = parse("collector = \"http://c:1\"\ncontxt = \"pi\"\n").unwrap_err();
        assert!(error.contains("line 2") && error.contains("contxt"), "{error}");
        let error = parse("color = \"sometimes\"\n").unwrap_err();
        assert!(error.contains("sometimes"), "{error}");
        let error = parse("[colors]\nbad = \"not-a-colour\"\n").unwrap_err();
        assert!(error.contains("not-a-colour"), "{error}");
    }

    #[test]
    fn paths_in_the_file_are_relative_to_it_and_a_missing_default_file_is_no_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("top.toml");
        assert_eq!(load(&path, false).unwrap(), None);
        assert!(matches!(load(&path, true), Err(ConfigError::Read { .. })), "a named file must exist");
        std::fs::write(&path, "token-file = \"read-token\"\ntls-ca = \"/etc/bakery/ca.crt\"\n").unwrap();
        let config = load(&path, false).unwrap().unwrap();
        assert_eq!(config.token_file, Some(dir.path().join("read-token")));
        assert_eq!(config.tls_ca, Some(PathBuf::from("/etc/bakery/ca.crt")));
        assert_eq!(resolve(Path::new("~/t"), Path::new("/x"), Some(Path::new("/h/ada"))), PathBuf::from("/h/ada/t"));
    }
}
