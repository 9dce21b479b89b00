//! How token files read, for every side that reads one: the agent sending a bearer token, the
//! collector accepting tokens, bakery-top sending one. One token per line, or `NODE TOKEN` per
//! line in a node token file; blank lines and `#` comments are ignored, so an old and a new token
//! can both be listed during a rotation (a sender uses the first).

/// A token file that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    #[error("the file lists no token (one per line; # starts a comment)")]
    Empty,
    #[error(
        "line {line} holds more than one word: this file lists one token per line (`NODE TOKEN` lines belong in a node token file)"
    )]
    SeveralWords { line: usize },
    #[error("line {line} has {words} word(s): a node token file lists `NODE TOKEN` per line")]
    NotNodeToken { line: usize, words: usize },
    #[error("line {line}: the token is already listed for node {node:?}; a token proves one node")]
    TokenForTwoNodes { line: usize, node: String },
}

/// One accepted token and, in a node token file, the node it proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub node: Option<String>,
    pub token: String,
}

/// The meaningful lines: trimmed, without blanks and `#` comments, with their line numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// The token a client sends: the file's first token line (a projected service-account token is
/// the whole file, one line).
pub fn client_token(text: &str) -> Result<&str, TokenFileError> {
    let (line, token) = lines(text).next().ok_or(TokenFileError::Empty)?;
    if token.split_whitespace().nth(1).is_some() {
        return Err(TokenFileError::SeveralWords { line });
    }
    Ok(token)
}

/// Accepted tokens, one per line. A line of several words is refused: it is a `NODE TOKEN` line
/// in the wrong file, or a token with a space no client could send.
pub fn parse_tokens(text: &str) -> Result<Vec<TokenEntry>, TokenFileError> {
    lines(text)
        .map(|(line, token)| {
            if token.split_whitespace().nth(1).is_some() {
                Err(TokenFileError::SeveralWords { line })
            } else {
                Ok(TokenEntry { node: None, token: token.to_string() })
            }
        })
        .collect()
}

/// `NODE TOKEN` lines. A node may have several tokens (a rotation); a token may prove one node
/// only, so a token listed for two nodes is refused.
pub fn parse_node_tokens(text: &str) -> Result<Vec<TokenEntry>, TokenFileError> {
    let mut entries: Vec<TokenEntry> = Vec::new();
    for (line, content) in lines(text) {
        let words: Vec<&str> = content.split_whitespace().collect();
        let [node, token] = words[..] else {
            return Err(TokenFileError::NotNodeToken { line, words: words.len() });
        };
        if let Some(other) = entries.iter().find(|e| e.token == token && e.node.as_deref() != Some(node)) {
            return Err(TokenFileError::TokenForTwoNodes { line, node: other.node.clone().unwrap_or_default() });
        }
        entries.push(TokenEntry { node: Some(node.to_string()), token: token.to_string() });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_sends_the_first_token_of_a_rotation_file() {
        let cases = [
            ("tok\n", Ok("tok")),
            ("  tok  ", Ok("tok")),
            ("# rotated 2026-11-01\nnew-token\nold-token\n", Ok("new-token")),
            ("eyJhbGciOi.payload.signature", Ok("eyJhbGciOi.payload.signature")),
            ("", Err(TokenFileError::Empty)),
            ("# only a comment\n\n", Err(TokenFileError::Empty)),
            ("pi-1 tok\n", Err(TokenFileError::SeveralWords { line: 1 })),
        ];
        for (text, expected) in cases {
            assert_eq!(client_token(text), expected, "{text:?}");
        }
    }

    #[test]
    fn token_files_list_one_token_per_line() {
        let text = "# rotated 2026-11-01\nold-token\n\n  new-token  \n#disabled\n";
        let tokens: Vec<String> = parse_tokens(text).expect("reads").into_iter().map(|e| e.token).collect();
        assert_eq!(tokens, ["old-token", "new-token"]);
        assert_eq!(parse_tokens("# nothing\n\n"), Ok(vec![]));
        assert_eq!(parse_tokens("a\npi-1 b\n"), Err(TokenFileError::SeveralWords { line: 2 }));
    }

    #[test]
    fn node_token_files_bind_a_token_to_one_node() {
        let entries = parse_node_tokens("# nodes\npi-1 aaa\npi-1 bbb\npi-2 ccc\n").expect("reads");
        let pairs: Vec<(Option<&str>, &str)> = entries.iter().map(|e| (e.node.as_deref(), e.token.as_str())).collect();
        assert_eq!(pairs, [(Some("pi-1"), "aaa"), (Some("pi-1"), "bbb"), (Some("pi-2"), "ccc")]);
        assert_eq!(parse_node_tokens("pi-1\n"), Err(TokenFileError::NotNodeToken { line: 1, words: 1 }));
        assert_eq!(
            parse_node_tokens("pi-1 aaa\npi-2 aaa\n"),
            Err(TokenFileError::TokenForTwoNodes { line: 2, node: "pi-1".into() })
        );
    }
}
