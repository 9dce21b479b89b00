//! The collector's token files, re-read when they change so tokens rotate without a restart: one
//! token per line (`--token-file`, `--read-token-file`, `--control-token-file`) or `NODE TOKEN`
//! per line (`--node-token-file`). The format (blank lines and `#` comments ignored, so an old and
//! a new token can both be listed during a rotation) is `bakery_signals::token`'s, the one every
//! reader of a token file shares.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{Error, Result};

pub use bakery_signals::token::TokenEntry;
use bakery_signals::token::TokenFileError;

/// How a file's lines read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One token per line.
    Tokens,
    /// `NODE TOKEN` per line (whitespace between).
    NodeTokens,
}

/// Accepted tokens, one per line (`bakery_signals::token::parse_tokens`), with the error told in
/// the collector's flags.
pub fn parse_tokens(text: &str) -> std::result::Result<Vec<TokenEntry>, String> {
    bakery_signals::token::parse_tokens(text).map_err(|error| explain(text, error))
}

/// `NODE TOKEN` lines (`bakery_signals::token::parse_node_tokens`), with the error told in the
/// collector's flags.
pub fn parse_node_tokens(text: &str) -> std::result::Result<Vec<TokenEntry>, String> {
    bakery_signals::token::parse_node_tokens(text).map_err(|error| explain(text, error))
}

/// A token file's error as the collector's operator reads it: the flag to use instead, and both
/// nodes of a token listed twice.
fn explain(text: &str, error: TokenFileError) -> String {
    match error {
        TokenFileError::SeveralWords { line } => format!(
            "line {line} holds more than one word: this file lists one token per line (`NODE TOKEN` lines belong \
             in --node-token-file)"
        ),
        TokenFileError::TokenForTwoNodes { line, node: other } => {
            let node = text.lines().nth(line.saturating_sub(1)).and_then(|l| l.split_whitespace().next());
            format!(
                "line {line}: the token of node {:?} is also listed for node {other:?}; a token proves one node",
                node.unwrap_or_default()
            )
        }
        TokenFileError::NotNodeToken { .. } | TokenFileError::Empty => error.to_string(),
    }
}

impl Format {
    fn parse(self, text: &str) -> std::result::Result<Vec<TokenEntry>, String> {
        match self {
            Format::Tokens => parse_tokens(text),
            Format::NodeTokens => parse_node_tokens(text),
        }
    }
}

/// A token file, re-read whenever its modification time or size changes.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    /// The flag that named it, for messages.
    flag: &'static str,
    format: Format,
    cache: Mutex<Cache>,
}

#[derive(Debug)]
struct Cache {
    stamp: Option<(SystemTime, u64)>,
    entries: Vec<TokenEntry>,
}

impl TokenFile {
    /// Reads the file; it must parse and list at least one token.
    pub fn load(path: &Path, flag: &'static str, format: Format) -> Result<TokenFile> {
        let (stamp, text) = read(path)?;
        let entries = format.parse(&text).map_err(|why| Error::Config(format!("{flag} {}: {why}", path.display())))?;
        if entries.is_empty() {
            return Err(Error::Config(format!(
                "{flag} {} lists no token ({}; # starts a comment)",
                path.display(),
                match format {
                    Format::Tokens => "one per line",
                    Format::NodeTokens => "`NODE TOKEN` per line",
                }
            )));
        }
        Ok(TokenFile {
            path: path.to_path_buf(),
            flag,
            format,
            cache: Mutex::new(Cache { stamp: Some(stamp), entries }),
        })
    }

    /// The entry whose token is `token`, in the file as it is now. Every entry is compared, in
    /// constant time, so the time taken tells nothing about which or how much matched.
    pub fn find(&self, token: &str) -> Option<TokenEntry> {
        let Ok(mut cache) = self.cache.lock() else { return None };
        self.refresh(&mut cache);
        let mut found = None;
        for entry in &cache.entries {
            if constant_time_eq(entry.token.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(entry.clone());
            }
        }
        found
    }

    /// True when `token` is listed.
    pub fn accepts(&self, token: &str) -> bool {
        self.find(token).is_some()
    }

    fn refresh(&self, cache: &mut Cache) {
        let current = std::fs::metadata(&self.path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        if current == cache.stamp {
            return;
        }
        let flag = self.flag;
        match read(&self.path).and_then(|(stamp, text)| {
            let entries = self.format.parse(&text).map_err(Error::Config)?;
            Ok((stamp, entries))
        }) {
            Ok((stamp, entries)) => {
                tracing::info!(flag, path = %self.path.display(), tokens = entries.len(), "token file changed, reloaded");
                *cache = Cache { stamp: Some(stamp), entries };
            }
            // Keep the tokens we had: a half-written or briefly missing file during a rotation
            // must not lock every agent out. The same stamp is not retried until it changes.
            Err(error) => {
                tracing::warn!(flag, path = %self.path.display(), %error, "cannot use the changed token file, keeping the previous tokens");
                cache.stamp = current;
            }
        }
    }
}

fn read(path: &Path) -> Result<((SystemTime, u64), String)> {
    let io = |source| Error::Io { action: "cannot read the token file", path: path.to_path_buf(), source };
    let metadata = std::fs::metadata(path).map_err(io)?;
    let stamp = (metadata.modified().map_err(io)?, metadata.len());
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok((stamp, text))
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(entries: &[TokenEntry]) -> Vec<(Option<&str>, &str)> {
        entries.iter().map(|e| (e.node.as_deref(), e.token.as_str())).collect()
    }

    #[test]
    fn token_file_lines() {
        // (text, parsed tokens or the error's start)
        let table: [(&str, Result<Vec<&str>, &str>); 5] = [
            ("# rotated 2026-11-01\nold-token\n\n  new-token  \n#disabled\n", Ok(vec!["old-token", "new-token"])),
            ("# nothing\n\n", Ok(vec![])),
            ("\tabc\r\n", Ok(vec!["abc"])),
            // a node token file given as --token-file: refused, with the right flag named
            ("pi-1 s3cret\n", Err("line 1 holds more than one word")),
            ("ok\n# fine\nbad token\n", Err("line 3 holds more than one word")),
        ];
        for (text, expected) in table {
            match (parse_tokens(text), expected) {
                (Ok(entries), Ok(want)) => {
                    assert_eq!(tokens(&entries), want.iter().map(|t| (None, *t)).collect::<Vec<_>>(), "{text:?}")
                }
                (Err(error), Err(start)) => {
                    assert!(error.starts_with(start), "{text:?}: {error}");
                    assert!(error.contains("--node-token-file"), "{error}");
                }
                (got, want) => panic!("{text:?}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn node_token_file_lines() {
        type Case<'a> = (&'a str, Result<Vec<(&'a str, &'a str)>, &'a str>);
        let table: [Case; 6] = [
            (
                "# node token\npi-1 aaa\npi-2\tbbb\n\n  pi-1   ccc  \n",
                Ok(vec![("pi-1", "aaa"), ("pi-2", "bbb"), ("pi-1", "ccc")]),
            ),
            ("pi-1 aaa\npi-1 aaa\n", Ok(vec![("pi-1", "aaa"), ("pi-1", "aaa")])),
            ("# none\n", Ok(vec![])),
            ("justatoken\n", Err("line 1 has 1 word(s)")),
            ("pi-1 aaa extra\n", Err("line 1 has 3 word(s)")),
            // one token for two nodes would let either holder write both
            ("pi-1 same\npi-2 same\n", Err("line 2: the token of node \"pi-2\" is also listed for node \"pi-1\"")),
        ];
        for (text, expected) in table {
            match (parse_node_tokens(text), expected) {
                (Ok(entries), Ok(want)) => assert_eq!(
                    tokens(&entries),
                    want.iter().map(|(n, t)| (Some(*n), *t)).collect::<Vec<_>>(),
                    "{text:?}"
                ),
                (Err(error), Err(start)) => assert!(error.starts_with(start), "{text:?}: {error}"),
                (got, want) => panic!("{text:?}: got {got:?}, expected {want:?}"),
            }
        }
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn a_rotated_token_file_is_picked_up_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "first\n").unwrap();
        let file = TokenFile::load(&path, "--token-file", Format::Tokens).unwrap();
        assert!(file.accepts("first"));
        assert!(!file.accepts("second"));
        // a different size is enough to notice the change even within the mtime granularity
        std::fs::write(&path, "first\nsecond\n").unwrap();
        assert!(file.accepts("second"));
        assert!(file.accepts("first"));
        std::fs::write(&path, "second\n").unwrap();
        assert!(!file.accepts("first"), "a token removed from the file is refused at once");
    }

    #[test]
    fn a_node_token_file_that_turns_bad_keeps_its_previous_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-tokens");
        std::fs::write(&path, "pi-1 aaa\n").unwrap();
        let file = TokenFile::load(&path, "--node-token-file", Format::NodeTokens).unwrap();
        assert_eq!(file.find("aaa").and_then(|e| e.node), Some("pi-1".into()));
        assert_eq!(file.find("bbb"), None);
        std::fs::write(&path, "pi-1 aaa\npi-2\n").unwrap();
        assert_eq!(file.find("aaa").and_then(|e| e.node), Some("pi-1".into()), "the previous tokens stay");
        std::fs::write(&path, "pi-1 aaa\npi-2 bbb\n").unwrap();
        assert_eq!(file.find("bbb").and_then(|e| e.node), Some("pi-2".into()));
    }

    #[test]
    fn a_token_file_that_is_empty_or_malformed_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# none yet\n").unwrap();
        let error = TokenFile::load(&path, "--read-token-file", Format::Tokens).unwrap_err().to_string();
        assert!(error.contains("--read-token-file") && error.contains("lists no token"), "{error}");
        std::fs::write(&path, "lonely\n").unwrap();
        let error = TokenFile::load(&path, "--node-token-file", Format::NodeTokens).unwrap_err().to_string();
        assert!(error.contains("--node-token-file") && error.contains("`NODE TOKEN` per line"), "{error}");
        let missing = TokenFile::load(&dir.path().join("missing"), "--token-file", Format::Tokens).unwrap_err();
        assert!(missing.to_string().contains("cannot read the token file"), "{missing}");
    }
}
