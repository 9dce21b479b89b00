//! Tidy checks that `cargo test` enforces: conventions a reviewer would
//! otherwise have to remember (module docs, no bare `#[ignore]`, shared lints,
//! the layering of crates that ARCHITECTURE.md writes down, no reference to
//! what lies outside the repository, files of at most 800 lines, functions
//! above 80 lines that say why they are one piece, citations of the stream
//! contract in `bakery.proto`, a code map in ARCHITECTURE.md that names every
//! source file).

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::util::workspace_root;

    /// Every tracked Rust source except generated code and build output.
    fn rust_sources() -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![workspace_root()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    if !matches!(name.as_str(), "target" | ".git" | ".venv" | "gen" | "fixtures" | "node_modules") {
                        stack.push(path);
                    }
                } else if name.ends_with(".rs") {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }

    fn relative(path: &Path) -> String {
        path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string()
    }

    #[test]
    fn every_module_starts_with_a_doc_line_saying_what_it_owns() {
        let missing: Vec<String> = rust_sources()
            .into_iter()
            .filter(|path| {
                let text = std::fs::read_to_string(path).unwrap();
                let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
                !first.starts_with("//!")
            })
            .map(|p| relative(&p))
            .collect();
        assert!(missing.is_empty(), "these files do not start with a `//!` line saying what they own: {missing:#?}");
    }

    #[test]
    fn no_test_is_ignored_without_a_reason() {
        let bare: Vec<String> = rust_sources()
            .into_iter()
            .filter(|path| path.file_name().is_some_and(|n| n != "tidy.rs"))
            .filter(|path| std::fs::read_to_string(path).unwrap().lines().any(|l| l.trim() == "#[ignore]"))
            .map(|p| relative(&p))
            .collect();
        assert!(bare.is_empty(), "a bare #[ignore] hides a test; give a reason and make CI run it: {bare:#?}");
    }

    /// The workspace's members (their folders), from the root manifest.
    fn members() -> Vec<String> {
        let manifest: toml::Table = read_manifest(&workspace_root().join("Cargo.toml"));
        let members = manifest["workspace"]["members"].as_array().expect("a members list");
        members.iter().map(|m| m.as_str().expect("a member folder").to_string()).collect()
    }

    fn read_manifest(path: &Path) -> toml::Table {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn every_crate_uses_the_workspace_lints() {
        let root = workspace_root();
        let members = members();
        assert!(!members.is_empty());
        for member in members {
            let text = std::fs::read_to_string(root.join(&member).join("Cargo.toml")).unwrap();
            assert!(
                text.contains("[lints]\nworkspace = true"),
                "{member}/Cargo.toml must have `[lints] workspace = true` so the shared lints apply"
            );
        }
    }

    /// ARCHITECTURE.md's "Dependency rules" as a table: each crate and the crates of bakery it may
    /// depend on. A change of layering changes both, in one commit.
    ///
    /// - `proto` owns the wire format and depends on nothing of ours; `signals` is the receiver's
    ///   meaning of the wire, over `proto`.
    /// - `cli` (what every binary does alike at its edge) depends on nothing of ours.
    /// - `agent`, `collector` and `top` depend on `proto` (and `signals`, `cli`), never on each
    ///   other; only the collector feeds `diagnosis`, which depends on nothing of ours.
    /// - `lab` (kernel objects, processes, test peers) depends only on `cli`.
    /// - `demo` uses `diagnosis`, `proto`, `signals`, `top` and `lab`; nothing depends on `demo`.
    /// - `tests` may use every library except `demo`.
    /// - `xtask` uses none.
    const MAY_USE: &[(&str, &[&str])] = &[
        ("bakery-proto", &[]),
        ("bakery-signals", &["bakery-proto"]),
        ("bakery-cli", &[]),
        ("bakery-agent", &["bakery-proto", "bakery-signals", "bakery-cli"]),
        ("bakery-collector", &["bakery-proto", "bakery-signals", "bakery-cli", "bakery-diagnosis"]),
        ("bakery-diagnosis", &[]),
        ("bakery-top", &["bakery-proto", "bakery-signals", "bakery-cli"]),
        ("bakery-lab", &["bakery-cli"]),
        ("bakery-demo", &["bakery-diagnosis", "bakery-proto", "bakery-signals", "bakery-top", "bakery-lab"]),
        (
            "bakery-tests",
            &[
                "bakery-proto",
                "bakery-signals",
                "bakery-cli",
                "bakery-agent",
                "bakery-collector",
                "bakery-diagnosis",
                "bakery-top",
                "bakery-lab",
            ],
        ),
        ("xtask", &[]),
    ];

    /// What a crate's own tests may use besides (`[dev-dependencies]`): the lab, everywhere but in
    /// the lab itself; and the demo's tests read the state it publishes back through the
    /// collector's cluster watch.
    const TESTS_MAY_ALSO_USE: &[(&str, &[&str])] = &[("bakery-demo", &["bakery-collector"])];

    /// The `bakery-*` crates a manifest table (`[dependencies]`, ...) names.
    fn ours(table: Option<&toml::Value>) -> Vec<String> {
        let table = table.and_then(toml::Value::as_table);
        table.into_iter().flat_map(|t| t.keys()).filter(|name| name.starts_with("bakery-")).cloned().collect()
    }

    #[test]
    fn each_crate_depends_only_on_the_crates_the_dependency_rules_allow() {
        let root = workspace_root();
        let mut broken = Vec::new();
        let mut placed = Vec::new();
        for member in members() {
            let manifest = read_manifest(&root.join(&member).join("Cargo.toml"));
            let name = manifest["package"]["name"].as_str().expect("a package name").to_string();
            let Some((_, may_use)) = MAY_USE.iter().find(|(crate_name, _)| *crate_name == name) else {
                broken.push(format!(
                    "{name} ({member}/) is not in the dependency rules: add it to ARCHITECTURE.md and MAY_USE"
                ));
                continue;
            };
            placed.push(name.clone());
            let tests_also: &[&str] =
                TESTS_MAY_ALSO_USE.iter().find(|(crate_name, _)| *crate_name == name).map_or(&[], |(_, also)| also);
            let mut tables = vec![("dependencies", ours(manifest.get("dependencies")))];
            tables.push(("build-dependencies", ours(manifest.get("build-dependencies"))));
            tables.push(("dev-dependencies", ours(manifest.get("dev-dependencies"))));
            // Platform-specific tables ([target.'cfg(..)'.dependencies]) follow the same rules.
            for target in manifest.get("target").and_then(toml::Value::as_table).into_iter().flat_map(|t| t.values()) {
                for kind in ["dependencies", "build-dependencies", "dev-dependencies"] {
                    tables.push((kind, ours(target.get(kind))));
                }
            }
            for (kind, used) in tables {
                for dependency in used {
                    let allowed = may_use.contains(&dependency.as_str())
                        || (kind == "dev-dependencies"
                            && ((dependency == "bakery-lab" && name != "bakery-lab")
                                || tests_also.contains(&dependency.as_str())));
                    if !allowed {
                        broken.push(format!("{name} has {dependency} in [{kind}]"));
                    }
                }
            }
        }
        assert!(
            broken.is_empty(),
            "the crates' dependencies break the layering in ARCHITECTURE.md's \"Dependency rules\" \
             (change the rules, MAY_USE and the manifest together): {broken:#?}"
        );
        let unplaced: Vec<&str> =
            MAY_USE.iter().map(|(name, _)| *name).filter(|name| !placed.iter().any(|p| p == name)).collect();
        assert!(unplaced.is_empty(), "MAY_USE names crates that are not workspace members: {unplaced:?}");
    }

    #[test]
    fn the_dependency_rules_say_nothing_depends_on_the_demo() {
        let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
        let rules = text.split("## Dependency rules").nth(1).expect("a \"Dependency rules\" section");
        let rules = rules.split("\n## ").next().unwrap_or_default();
        for rule in ["nothing depends on `demo`", "`xtask` uses none", "`lab`"] {
            assert!(rules.contains(rule), "the dependency rules no longer say {rule:?}; MAY_USE follows them");
        }
        assert!(MAY_USE.iter().all(|(_, may_use)| !may_use.contains(&"bakery-demo")));
    }

    /// A source file as the checks see it: each line's code (strings and char literals blanked,
    /// comments removed) and its comments, apart. A rough lexer, enough to count braces and to
    /// find comments: nested block comments, escapes, raw strings (`r#"..."#`) and lifetimes
    /// (`'a`, not a char literal) are told apart; macros are not expanded.
    #[derive(Debug, Default)]
    struct Scanned {
        code: Vec<String>,
        comments: Vec<String>,
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Lexed {
        Code,
        LineComment,
        BlockComment(usize),
        Str,
        RawStr(usize),
    }

    fn scan(text: &str) -> Scanned {
        let mut scanned = Scanned::default();
        let mut state = Lexed::Code;
        for line in text.lines() {
            let chars: Vec<char> = line.chars().collect();
            let (mut code, mut comment) = (String::new(), String::new());
            if state == Lexed::LineComment {
                state = Lexed::Code;
            }
            let mut i = 0;
            while i < chars.len() {
                let (c, next) = (chars[i], chars.get(i + 1).copied());
                match state {
                    Lexed::LineComment => comment.push(c),
                    Lexed::BlockComment(depth) => {
                        if c == '*' && next == Some('/') {
                            state = if depth == 1 { Lexed::Code } else { Lexed::BlockComment(depth - 1) };
                            i += 1;
                        } else if c == '/' && next == Some('*') {
                            state = Lexed::BlockComment(depth + 1);
                            i += 1;
                        } else {
                            comment.push(c);
                        }
                    }
                    Lexed::Str => match c {
                        '\\' => i += 1,
                        '"' => {
                            state = Lexed::Code;
                            code.push('"');
                        }
                        _ => code.push(' '),
                    },
                    Lexed::RawStr(hashes) => {
                        if c == '"' && chars[i + 1..].iter().take(hashes).filter(|h| **h == '#').count() == hashes {
                            state = Lexed::Code;
                            code.push('"');
                            i += hashes;
                        } else {
                            code.push(' ');
                        }
                    }
                    Lexed::Code => {
                        let (skip, entered) = lex_code(&chars, i, &mut code);
                        i += skip;
                        if let Some(entered) = entered {
                            state = entered;
                        }
                    }
                }
                i += 1;
            }
            scanned.code.push(code);
            scanned.comments.push(comment);
        }
        scanned
    }

    /// One step of [`scan`] in code at `chars[i]`: what it adds to `code`, how many more chars
    /// it took, and the state a comment or string start enters.
    fn lex_code(chars: &[char], i: usize, code: &mut String) -> (usize, Option<Lexed>) {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        let after_identifier = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        match c {
            '/' if next == Some('/') => (1, Some(Lexed::LineComment)),
            '/' if next == Some('*') => (1, Some(Lexed::BlockComment(1))),
            '"' => {
                code.push('"');
                (0, Some(Lexed::Str))
            }
            'r' if !after_identifier && matches!(next, Some('"' | '#')) => {
                let hashes = chars[i + 1..].iter().take_while(|h| **h == '#').count();
                if chars.get(i + 1 + hashes) == Some(&'"') {
                    code.push('"');
                    (1 + hashes, Some(Lexed::RawStr(hashes)))
                } else {
                    code.push(c);
                    (0, None)
                }
            }
            '\'' if next == Some('\\') => {
                // An escaped char literal: '\n', '\'', '\u{7f}'.
                let close = chars[i + 2..].iter().skip(1).position(|q| *q == '\'').map_or(0, |p| p + 3);
                code.push_str("' '");
                (close, None)
            }
            '\'' if chars.get(i + 2) == Some(&'\'') => {
                code.push_str("' '");
                (2, None)
            }
            _ => {
                code.push(c);
                (0, None)
            }
        }
    }

    /// A `fn` item with a body: the line of `fn` and the lines of its opening and closing braces
    /// (0-based).
    #[derive(Debug, PartialEq)]
    struct FnItem {
        name: String,
        fn_line: usize,
        open_line: usize,
        close_line: usize,
    }

    /// Every `fn` with a body in `scanned`, nested ones included.
    fn fn_items(scanned: &Scanned) -> Vec<FnItem> {
        let lines: Vec<Vec<char>> = scanned.code.iter().map(|l| l.chars().collect()).collect();
        let mut items = Vec::new();
        for (fn_line, line) in lines.iter().enumerate() {
            for start in fn_keywords(line) {
                let name: String = line[start + 2..]
                    .iter()
                    .skip_while(|c| c.is_whitespace())
                    .take_while(|c| c.is_alphanumeric() || **c == '_')
                    .collect();
                if name.is_empty() {
                    continue;
                }
                if let Some((open_line, close_line)) = body_lines(&lines, fn_line, start + 2) {
                    items.push(FnItem { name, fn_line, open_line, close_line });
                }
            }
        }
        items
    }

    /// Where the keyword `fn` (followed by a space) starts in a line of code.
    fn fn_keywords(line: &[char]) -> Vec<usize> {
        let word = |c: &char| c.is_alphanumeric() || *c == '_';
        (0..line.len().saturating_sub(2))
            .filter(|&i| line[i] == 'f' && line[i + 1] == 'n' && line[i + 2].is_whitespace())
            .filter(|&i| i == 0 || !word(&line[i - 1]))
            .collect()
    }

    /// The lines of the body's braces of the `fn` whose signature starts at (`line`, `column`):
    /// `None` when a `;` comes before any `{` (a declaration without a body).
    fn body_lines(lines: &[Vec<char>], line: usize, column: usize) -> Option<(usize, usize)> {
        let mut depth = 0usize;
        let mut open = None;
        for (at, text) in lines.iter().enumerate().skip(line) {
            let from = if at == line { column } else { 0 };
            for c in text.iter().skip(from) {
                match c {
                    ';' if open.is_none() => return None,
                    '{' => {
                        open.get_or_insert(at);
                        depth += 1;
                    }
                    '}' if open.is_some() => {
                        depth -= 1;
                        if depth == 0 {
                            return open.map(|open| (open, at));
                        }
                    }
                    _ => {}
                }
            }
        }
        None
    }

    /// The longest a function body may span (its braces' lines included) without saying why it
    /// is one piece.
    const MAX_FN_LINES: usize = 80;

    /// The longest a source file may be.
    const MAX_FILE_LINES: usize = 800;

    /// What a comment says to keep a long function whole: `// One piece: <why>` (or in a doc
    /// comment) within the 3 lines above the `fn` (doc and attributes included), on its
    /// signature, or on the first line of its body.
    const ONE_PIECE: &str = "One piece:";

    /// The functions of `text` longer than [`MAX_FN_LINES`] without a [`ONE_PIECE`] comment:
    /// (1-based line of the `fn`, name, body lines).
    fn long_functions_without_a_reason(text: &str) -> Vec<(usize, String, usize)> {
        let scanned = scan(text);
        fn_items(&scanned)
            .into_iter()
            .filter(|item| item.close_line - item.open_line + 1 > MAX_FN_LINES)
            .filter(|item| {
                let from = item.fn_line.saturating_sub(3);
                let through = (item.open_line + 1).min(scanned.comments.len() - 1);
                !scanned.comments[from..=through].iter().any(|comment| comment.contains(ONE_PIECE))
            })
            .map(|item| (item.fn_line + 1, item.name, item.close_line - item.open_line + 1))
            .collect()
    }

    #[test]
    fn the_scanner_counts_braces_in_code_only_and_finds_long_functions() {
        let example = [
            "/// Doc with a { brace.",
            "fn short<'a>(x: &'a str) -> char {",
            "    let _ = \"}}} // not a comment\";",
            "    let _ = r#\"a \"quoted\" { raw\"#;",
            "    /* a { block /* nested } */ comment */",
            "    if x.is_empty() { '{' } else { '\\'' }",
            "}",
            "trait T { fn declared(&self); }",
            "fn long() {",
        ]
        .join("\n");
        let body = "    let _ = 1;\n".repeat(MAX_FN_LINES);
        let text = format!("{example}\n{body}}}\n// One piece: a table read top to bottom.\nfn kept() {{\n{body}}}\n");
        let scanned = scan(&text);
        assert_eq!(scanned.comments[0], "/ Doc with a { brace.");
        assert_eq!(scanned.comments[4], " a { block  nested }  comment ");
        assert!(!scanned.code[2].contains('}') && !scanned.code[3].contains('{'), "{:?}", &scanned.code[2..4]);
        let items = fn_items(&scanned);
        let spans: Vec<(&str, usize, usize)> =
            items.iter().map(|i| (i.name.as_str(), i.fn_line, i.close_line - i.open_line + 1)).collect();
        assert_eq!(
            spans,
            [("short", 1, 6), ("long", 8, MAX_FN_LINES + 2), ("kept", 11 + MAX_FN_LINES, MAX_FN_LINES + 2)]
        );
        assert_eq!(long_functions_without_a_reason(&text), [(9, "long".to_string(), MAX_FN_LINES + 2)]);
    }

    /// Functions longer than [`MAX_FN_LINES`] lines say why they are one piece with a
    /// [`ONE_PIECE`] comment (`// One piece: <why>`) just above or at their start; else split
    /// them into named steps.
    #[test]
    fn functions_above_80_lines_say_why_they_are_one_piece() {
        let mut long = Vec::new();
        for path in rust_sources() {
            let text = std::fs::read_to_string(&path).unwrap();
            for (line, name, span) in long_functions_without_a_reason(&text) {
                long.push(format!("{}:{line}: fn {name} spans {span} lines", relative(&path)));
            }
        }
        assert!(
            long.is_empty(),
            "split these functions into named steps, or say why each is one piece in a `// {ONE_PIECE} ...` \
             comment within the 3 lines above the `fn` or on the first line of its body:\n{}",
            long.join("\n")
        );
    }

    #[test]
    fn no_source_file_is_above_800_lines() {
        let long: Vec<String> = rust_sources()
            .into_iter()
            .filter_map(|path| {
                let lines = std::fs::read_to_string(&path).unwrap().lines().count();
                (lines > MAX_FILE_LINES).then(|| format!("{}: {lines} lines", relative(&path)))
            })
            .collect();
        assert!(long.is_empty(), "split these files by role (at most {MAX_FILE_LINES} lines):\n{}", long.join("\n"));
    }

    /// Lines allowed to name a path in people's folders, each with its reason: (file, text the
    /// line contains, why).
    const PEOPLES_PATHS_ALLOWED: &[(&str, &str, &str)] = &[(
        "demo/src/oha.rs",
        "/root/.cargo/bin/oha",
        "where `cargo install` run as root puts oha, still looked at when sudo keeps the caller's HOME",
    )];

    /// What in a line refers to something outside the repository: an issue or acceptance point
    /// of a tracker, a document nobody can open from here, or a path in someone's folders (a
    /// test's own directories come from `tempfile`). Kernel paths (`/proc`, `/sys`, `/run`,
    /// `/etc`, `/dev`, `/usr`, `/var`) are facts and pass.
    fn outside_references(line: &str) -> Vec<&'static str> {
        let lower = line.to_lowercase();
        let mut found = Vec::new();
        if followed_by_a_number(&lower, "issue") {
            found.push("an issue");
        }
        if followed_by_a_number(&lower, "acceptance") || lower.contains("acceptance point") {
            found.push("an acceptance point");
        }
        for document in ["field guide", "style notes"] {
            if lower.contains(document) {
                found.push(document);
            }
        }
        for folder in ["/tmp", "/work", "/root", "/home"] {
            if starts_an_absolute_path(&lower, folder) {
                found.push(folder);
            }
        }
        found
    }

    /// `word`, spaces, maybe `#`, then a digit (the word, then `4` or `#4`).
    fn followed_by_a_number(lower: &str, word: &str) -> bool {
        lower.match_indices(word).any(|(at, _)| {
            let rest = lower[at + word.len()..].trim_start();
            let rest = rest.strip_prefix('#').unwrap_or(rest);
            rest.starts_with(|c: char| c.is_ascii_digit())
        })
    }

    /// `folder` as the start of an absolute path: not inside another path or word (`/proc/1/root/`
    /// and `/tmpfs` pass), and ending the path or followed by `/`.
    fn starts_an_absolute_path(lower: &str, folder: &str) -> bool {
        lower.match_indices(folder).any(|(at, _)| {
            let before = lower[..at].chars().next_back();
            let after = lower[at + folder.len()..].chars().next();
            let starts = before.is_none_or(|c| c.is_whitespace() || "\"'`([=,:".contains(c));
            let ends = after.is_none_or(|c| !(c.is_alphanumeric() || "_-.".contains(c)));
            starts && ends
        })
    }

    #[test]
    fn the_reference_check_tells_documents_and_peoples_paths_from_facts() {
        let hits = |line: &str| outside_references(line);
        // Each input that should be found is built from pieces, so that the text of this file
        // holds none of what the check (or a reader searching for citations) would find.
        assert_eq!(hits(concat!("// See iss", "ue 4 and Iss", "ue #12.")), ["an issue"]);
        assert_eq!(hits(concat!("// accep", "tance 5; the accep", "tance point says")), ["an acceptance point"]);
        assert_eq!(
            hits(concat!("/// as the Field Gu", "ide and the style no", "tes say")),
            ["field guide", "style notes"]
        );
        assert_eq!(hits(concat!(r#"let dir = "/t"#, r#"mp/bakery-run";"#)), ["/tmp"]);
        assert_eq!(hits(concat!(r#"Path::new("/ho"#, r#"me")"#)), ["/home"]);
        assert_eq!(hits(concat!("// `/wo", "rk/main/x.rs` and /ro", "ot/notes")), ["/work", "/root"]);
        for fact in [
            "/proc/self/root/etc and /sys/fs/cgroup",
            r#"format!("{root}/home/x")"#,
            "mount -t tmpfs none /run/x; /tmpfs",
            "// an issue of the tracker, issued twice",
            "let homework = \"/var/tmp/x\";",
        ] {
            assert!(hits(fact).is_empty(), "{fact}: {:?}", hits(fact));
        }
    }

    /// No source cites what a reader of the repository cannot open: issues, acceptance points,
    /// outside documents, or files in someone's folders. State the fact (and its real source,
    /// a kernel file or a spec, where it matters) instead.
    #[test]
    fn sources_refer_to_nothing_outside_the_repository() {
        let mut hits = Vec::new();
        for path in rust_sources() {
            let file = relative(&path);
            // The check's own patterns and examples.
            if file == "xtask/src/tidy.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (number, line) in text.lines().enumerate() {
                let allowed = PEOPLES_PATHS_ALLOWED.iter().any(|(f, text, _)| *f == file && line.contains(text));
                let found = outside_references(line);
                if !found.is_empty() && !allowed {
                    hits.push(format!("{file}:{}: {} ({})", number + 1, line.trim(), found.join(", ")));
                }
            }
        }
        assert!(
            hits.is_empty(),
            "these lines refer to something outside the repository; state the fact instead (a test's own \
             directories come from tempfile; a literal path a test needs goes in PEOPLES_PATHS_ALLOWED with \
             its reason):\n{}",
            hits.join("\n")
        );
    }

    /// The numbered points of the stream contract at the top of `bakery.proto`.
    fn contract_points() -> usize {
        let proto = std::fs::read_to_string(workspace_root().join("proto/proto/bakery/v1/bakery.proto")).unwrap();
        let contract = proto.split("The stream contract").nth(1).expect("the stream contract in bakery.proto");
        let contract = contract.split("syntax = ").next().unwrap_or_default();
        contract
            .lines()
            .filter_map(|line| line.strip_prefix("//")?.trim_start().split_once(". ")?.0.parse::<usize>().ok())
            .max()
            .unwrap_or(0)
    }

    /// What is wrong with a line's citations of the stream contract (`previous` is the line
    /// before, where a citation may start): each says "bakery.proto, contract point N" with an N
    /// the contract has.
    fn bad_contract_citation(previous: &str, line: &str, points: usize) -> Option<String> {
        let lower = line.to_lowercase();
        for (at, _) in lower.match_indices("contract point") {
            let before = lower[..at].trim_end();
            let named = before.ends_with("bakery.proto,")
                || (before.trim_start_matches(['/', '!', ' ']).is_empty()
                    && previous.trim_end().ends_with("bakery.proto,"));
            if !named {
                return Some("cite it as \"bakery.proto, contract point N\"".into());
            }
            let rest = lower[at + "contract point".len()..].trim_start_matches('s').trim_start();
            let number: String = rest.chars().take_while(char::is_ascii_digit).collect();
            match number.parse::<usize>() {
                Ok(n) if (1..=points).contains(&n) => {}
                _ => return Some(format!("the contract has points 1 to {points}")),
            }
        }
        None
    }

    #[test]
    fn a_contract_citation_names_bakery_proto_and_a_point_it_has() {
        assert!(contract_points() >= 10, "the stream contract is numbered");
        assert_eq!(bad_contract_citation("", "/// see bakery.proto, contract point 4", 12), None);
        assert_eq!(bad_contract_citation("// acked (bakery.proto,", "// contract point 5).", 12), None);
        assert!(bad_contract_citation("", "// (contract point 4)", 12).is_some());
        assert!(bad_contract_citation("", "// bakery.proto, contract point 13", 12).is_some());
    }

    /// Code that relies on the stream contract cites the point at the top of `bakery.proto`
    /// ("bakery.proto, contract point N"), so a reader finds it, and the point exists.
    #[test]
    fn citations_of_the_stream_contract_name_bakery_proto_and_an_existing_point() {
        let points = contract_points();
        let mut bad = Vec::new();
        for path in rust_sources() {
            let file = relative(&path);
            if file == "xtask/src/tidy.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut previous = "";
            for (number, line) in text.lines().enumerate() {
                if let Some(why) = bad_contract_citation(previous, line, points) {
                    bad.push(format!("{file}:{}: {} ({why})", number + 1, line.trim()));
                }
                previous = line;
            }
        }
        assert!(bad.is_empty(), "citations of the stream contract:\n{}", bad.join("\n"));
    }

    /// The part of ARCHITECTURE.md's code map about one top-level folder: from its
    /// "### `dir/`" heading to the next heading (`###` or `##`).
    fn code_map_section<'a>(doc: &'a str, dir: &str) -> Option<&'a str> {
        let heading = format!("\n### `{dir}/`");
        let body = &doc[doc.find(&heading)? + heading.len()..];
        let end = ["\n### ", "\n## "].iter().filter_map(|h| body.find(h)).min().unwrap_or(body.len());
        Some(&body[..end])
    }

    /// Whether a code-map section names `file` (its path from the workspace root), by the rule
    /// of `the_code_map_names_every_source_file`.
    fn names_file(section: &str, file: &str) -> bool {
        let (folder, name) = file.rsplit_once('/').unwrap_or(("", file));
        let crate_root = folder.split('/').count() == 2 && folder.ends_with("/src");
        let by_folder = matches!(name, "mod.rs" | "main.rs" | "lib.rs") && !crate_root;
        let folder = format!("{folder}/");
        let ends = |path: &str, span: &str| path == span || path.ends_with(&format!("/{span}"));
        let spans = section.split('`').skip(1).step_by(2).map(|span| span.split("::").next().unwrap_or(span));
        spans
            .filter(|span| !span.trim_matches('/').is_empty())
            .any(|span| ends(file, span) || (by_folder && span.ends_with('/') && ends(&folder, span)))
    }

    #[test]
    fn a_code_map_section_names_a_file_by_the_end_of_its_path_or_by_its_folder() {
        let doc = "## Code map\n\n### `collector/` (`bakery-collector`)\n\n\
                   - `export/feed.rs`: the feed; `inspect.rs`; `live/`: the analysis.\n\
                   - `src/` is everything; `tests/collector/bounds.rs::a_test`.\n\n\
                   ### `top/`\n\n- `hooks.rs`\n\n## Data flow\n\n`store/mod.rs`\n";
        let section = code_map_section(doc, "collector").expect("the collector's section");
        for named in [
            "collector/src/export/feed.rs",
            "collector/src/inspect.rs",
            "collector/src/live/mod.rs",
            "collector/tests/collector/bounds.rs",
        ] {
            assert!(names_file(section, named), "{named}");
        }
        for not_named in [
            "collector/src/export/hooks.rs", // in the next section
            "collector/src/store/mod.rs",    // after the code map
            "collector/src/lib.rs",          // `src/` names no crate root file
            "collector/src/feed.rs",         // `export/feed.rs` is another file
            "collector/src/old_inspect.rs",  // a name ends at a `/`
            "collector/src/live/convert.rs", // a folder names only its mod.rs
        ] {
            assert!(!names_file(section, not_named), "{not_named}");
        }
        assert!(code_map_section(doc, "top").is_some_and(|top| !top.contains("store")));
        assert_eq!(code_map_section(doc, "agent"), None);
    }

    /// ARCHITECTURE.md's code map names every source file but generated code in the section of
    /// its top-level folder (from its "### `dir/`" heading to the next heading), so a reader
    /// finds where each file belongs and what it owns, and a new file comes with its line.
    ///
    /// The rule: a span in backticks, cut at any `::`, names a file when it is the end of the
    /// file's path in whole components (`feed.rs`, `export/feed.rs`, `src/export/feed.rs`,
    /// `tests/collector/export.rs`); a `mod.rs`, `main.rs` or `lib.rs` is also named by the end of
    /// its folder with a trailing slash (`live/`, `tests/e2e/`), except the crate's own
    /// `src/main.rs` and `src/lib.rs` (`src/` names no file).
    #[test]
    fn the_code_map_names_every_source_file() {
        let doc = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
        let code_map = doc.split("\n## Code map").nth(1).expect("a \"Code map\" section");
        let code_map = code_map.split("\n## ").next().unwrap_or_default();
        let mut missing = Vec::new();
        for path in rust_sources() {
            let file = relative(&path);
            let dir = file.split('/').next().unwrap_or_default();
            match code_map_section(code_map, dir) {
                Some(section) if names_file(section, &file) => {}
                Some(_) => missing.push(file),
                None => missing.push(format!("{file} (there is no \"### `{dir}/`\" section)")),
            }
        }
        assert!(
            missing.is_empty(),
            "ARCHITECTURE.md's code map does not name these files; in the \"### `<dir>/`\" section of \
             each one's top-level folder, say in a line what it owns, naming it in backticks by its path in \
             the crate (`export/feed.rs`) or its file name (`feed.rs`), or, for a mod.rs, main.rs or lib.rs \
             other than the crate's src/main.rs and src/lib.rs, by its folder (`live/`):\n{}",
            missing.join("\n")
        );
    }
}
