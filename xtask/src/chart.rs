//! `cargo xtask chart`: lints, renders, validates and tests the Helm chart
//! (`charts/bakery`) with the real Helm engine, in a pinned Python virtual
//! environment at `<workspace>/.venv`.
//!
//! No helm binary and no cluster are needed: PyPI's `helm-python-sdk` embeds
//! Helm's engine, `kubernetes-validate` carries the Kubernetes schemas. The
//! Python side lives in `charts/tests/` (`check_chart.py` for the steps,
//! pytest files for the assertions on rendered objects, `values_table.py` for
//! the README's generated values table and OCI install commands).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::setup::has_command;
use crate::util::{exec, is_root, workspace_root};

const REQUIREMENTS: &str = "charts/tests/requirements.txt";
/// The alerting rules (one plain Prometheus rule file, embedded by the chart's PrometheusRule) and
/// their promtool unit tests, which name the rule file relative to this folder.
const RULES_DIR: &str = "charts/bakery/rules";
const RULES_FILE: &str = "bakery-alerts.yaml";
const RULES_TESTS: &str = "bakery-alerts.test.yaml";
/// helm-python-sdk 0.2 needs Python 3.10 or newer.
const MIN_PYTHON: (u32, u32) = (3, 10);
/// Written into the venv after a successful install: the requirements it
/// holds. Unchanged requirements skip pip (and the network) on later runs.
const STAMP: &str = ".bakery-requirements.txt";

/// The virtual environment and how to run pip for it.
struct Venv {
    dir: PathBuf,
    python: PathBuf,
    /// Without ensurepip (Debian without python3-venv) the venv has no pip of
    /// its own; the base interpreter's pip installs into it (`--python`).
    external_pip: Option<String>,
}

impl Venv {
    fn pip(&self) -> Command {
        match &self.external_pip {
            Some(base) => {
                let mut cmd = Command::new(base);
                cmd.args(["-m", "pip", "--python"]).arg(&self.python);
                cmd
            }
            None => {
                let mut cmd = Command::new(&self.python);
                cmd.args(["-m", "pip"]);
                cmd
            }
        }
    }
}

/// `write_readme` (`--write-readme`): rewrite the README's generated parts
/// from values.schema.json, values.yaml and Chart.yaml before the steps.
pub fn run(write_readme: bool) -> Result<()> {
    let root = workspace_root();
    let tests_dir = root.join("charts/tests");
    let rendered_dir = root.join("target/chart");
    let started = Instant::now();
    let mut steps = Steps { total: 9, done: 0, timings: Vec::new() };

    steps.run("system tools: busybox, to run the helm test hook's script", ensure_busybox)?;
    let venv = steps.run("Python virtual environment (.venv)", || ensure_venv(&root))?;
    steps.run("pinned packages (charts/tests/requirements.txt)", || install_requirements(&root, &venv))?;
    let check = |args: &[&str]| {
        let mut cmd = python(&venv, &tests_dir);
        cmd.arg("check_chart.py").args(args);
        run_visible(cmd)
    };
    let rendered = rendered_dir.to_string_lossy().into_owned();
    if write_readme {
        check(&["values-table", "--write"])?;
    }
    steps.run("helm lint --strict and render: default values and each ci/*.yaml", || {
        check(&["lint-render", &rendered])
    })?;
    steps.run("strict validation: Kubernetes 1.30 and the newest schemas", || check(&["validate", &rendered]))?;
    steps.run("values.schema.json refuses bad values", || check(&["refuse-bad-values"]))?;
    steps.run("charts/bakery/README.md: values table and OCI install commands are fresh", || {
        check(&["values-table"])
            .context("the output above says what is missing; `cargo xtask chart --write-readme` rewrites the README's generated parts")
    })?;
    steps.run("alerting rules: promtool check rules and test rules (charts/bakery/rules)", || promtool_rules(&root))?;
    steps.run("chart tests: pytest charts/tests", || {
        let mut cmd = python(&venv, &tests_dir);
        cmd.args(["-m", "pytest", "-q"]);
        run_visible(cmd)
    })?;
    eprintln!("xtask chart: all steps passed in {:.1}s; rendered manifests are in {rendered}", secs(started));
    for (name, seconds) in &steps.timings {
        eprintln!("xtask chart:   {seconds:6.1}s  {name}");
    }
    Ok(())
}

/// Numbered steps that print what they do, how long it took, and which step
/// failed.
struct Steps {
    total: usize,
    done: usize,
    timings: Vec<(String, f64)>,
}

impl Steps {
    fn run<T>(&mut self, name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
        self.done += 1;
        let number = format!("[{}/{}]", self.done, self.total);
        eprintln!("xtask chart: {number} {name} ...");
        let started = Instant::now();
        match step() {
            Ok(value) => {
                let seconds = secs(started);
                eprintln!("xtask chart: {number} ok ({seconds:.1}s)");
                self.timings.push((name.to_string(), seconds));
                Ok(value)
            }
            Err(error) => Err(error.context(format!("xtask chart: step {number} \"{name}\" failed"))),
        }
    }
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// A command of the venv's interpreter, run in `charts/tests`, that leaves no
/// bytecode files in the source tree.
fn python(venv: &Venv, tests_dir: &Path) -> Command {
    let mut cmd = Command::new(&venv.python);
    cmd.current_dir(tests_dir).env("PYTHONDONTWRITEBYTECODE", "1").env("PYTHONUNBUFFERED", "1");
    cmd
}

/// Runs `cmd` with its output going straight to the terminal.
fn run_visible(mut cmd: Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}; its output above says why");
    }
    Ok(())
}

/// The hook test runs the `helm test` pod's script with busybox's applets,
/// as the busybox image would. Installed with apt-get when running as root;
/// otherwise those tests are skipped (pytest says so).
fn ensure_busybox() -> Result<()> {
    if has_command("busybox") {
        return Ok(());
    }
    if !is_root() || !has_command("apt-get") {
        eprintln!(
            "xtask chart:   busybox is missing and cannot be installed here: the hook script tests will be skipped"
        );
        return Ok(());
    }
    eprintln!("xtask chart:   installing busybox with apt-get");
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "-qq", "--no-install-recommends", "busybox"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    if exec(install).is_err() {
        // A fresh machine may have no package lists yet.
        let mut update = Command::new("apt-get");
        update.args(["update", "-qq"]);
        exec(update)?;
        let mut install = Command::new("apt-get");
        install
            .args(["install", "-y", "-qq", "--no-install-recommends", "busybox"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        exec(install)?;
    }
    Ok(())
}

/// The alerting rules through the real Prometheus engine: `promtool check rules` on the rule
/// file the chart embeds, then `promtool test rules` on its unit tests (each alert firing and not
/// firing). promtool comes with Debian's `prometheus` package, installed with apt-get as root;
/// otherwise a missing promtool fails this step with the command that installs it.
fn promtool_rules(root: &Path) -> Result<()> {
    crate::setup::packages(&[("prometheus", "promtool")])
        .context("promtool (Debian's prometheus package) checks and tests the alerting rules")?;
    let dir = root.join(RULES_DIR);
    for (action, file) in [("check", RULES_FILE), ("test", RULES_TESTS)] {
        let mut cmd = Command::new("promtool");
        cmd.current_dir(&dir).args([action, "rules", file]);
        run_visible(cmd)?;
    }
    Ok(())
}

/// Creates `<root>/.venv` unless a working one is there.
fn ensure_venv(root: &Path) -> Result<Venv> {
    let dir = root.join(".venv");
    let venv_python = dir.join("bin/python");
    let base = std::env::var("BAKERY_PYTHON").unwrap_or_else(|_| "python3".into());
    if runs(Command::new(&venv_python).args(["-c", "import sys"])) {
        let external_pip =
            if runs(Command::new(&venv_python).args(["-m", "pip", "--version"])) { None } else { Some(base) };
        eprintln!("xtask chart:   using {}", venv_python.display());
        return Ok(Venv { dir, python: venv_python, external_pip });
    }

    let version = python_version(&base)?;
    if version < MIN_PYTHON {
        bail!(
            "{base} is Python {}.{}; helm-python-sdk needs {}.{} or newer (set BAKERY_PYTHON to another interpreter)",
            version.0,
            version.1,
            MIN_PYTHON.0,
            MIN_PYTHON.1
        );
    }
    if dir.exists() {
        eprintln!("xtask chart:   {} exists but its python does not run: recreating it", dir.display());
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing the broken {}", dir.display()))?;
    }
    eprintln!("xtask chart:   creating {} with {base} (Python {}.{})", dir.display(), version.0, version.1);
    let created = Command::new(&base).args(["-m", "venv"]).arg(&dir).output();
    let created = created.with_context(|| format!("could not run {base} -m venv"))?;
    if created.status.success() {
        return Ok(Venv { dir, python: venv_python, external_pip: None });
    }
    // Debian's python3 without the python3-venv package has no ensurepip, so
    // `venv` fails; a venv without pip plus the system pip still works.
    eprintln!(
        "xtask chart:   `{base} -m venv` failed ({}); trying a venv without pip, filled by {base}'s own pip",
        String::from_utf8_lossy(&created.stderr).lines().last().unwrap_or("no message").trim()
    );
    let _ = std::fs::remove_dir_all(&dir);
    let bare = Command::new(&base).args(["-m", "venv", "--without-pip"]).arg(&dir).status();
    if !bare.is_ok_and(|s| s.success()) || !runs(Command::new(&base).args(["-m", "pip", "--version"])) {
        bail!(
            "cannot create a Python virtual environment at {}: `{base} -m venv` needs ensurepip, and {base} has no pip \
             either. On Debian: apt-get install -y python3-venv python3-pip",
            dir.display()
        );
    }
    Ok(Venv { dir, python: venv_python, external_pip: Some(base) })
}

fn runs(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success())
}

fn python_version(python: &str) -> Result<(u32, u32)> {
    let output = Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .with_context(|| format!("could not run {python}: install Python 3 (Debian: apt-get install -y python3)"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_python_version(&text).with_context(|| format!("{python} printed {text:?} for its version"))
}

/// "3.11\n" -> (3, 11).
fn parse_python_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// pip-installs the pinned requirements unless the venv already holds exactly them.
fn install_requirements(root: &Path, venv: &Venv) -> Result<()> {
    let requirements = root.join(REQUIREMENTS);
    let wanted =
        std::fs::read_to_string(&requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = venv.dir.join(STAMP);
    if std::fs::read_to_string(&stamp).is_ok_and(|installed| installed == wanted) {
        eprintln!("xtask chart:   already installed (requirements unchanged since the last install)");
        return Ok(());
    }
    eprintln!("xtask chart:   pip install -r {REQUIREMENTS} (the first time downloads about 80 MB from PyPI)");
    let mut pip = venv.pip();
    pip.args(["install", "--disable-pip-version-check", "--no-input", "--quiet", "--only-binary=:all:", "-r"])
        .arg(&requirements);
    let status = pip.status().with_context(|| format!("could not start {pip:?}"))?;
    if !status.success() {
        bail!("{pip:?} exited with {status}: is PyPI reachable? pip's output above says more");
    }
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_versions_parse() {
        assert_eq!(parse_python_version("3.11\n"), Some((3, 11)));
        assert_eq!(parse_python_version("3.9"), Some((3, 9)));
        assert!(parse_python_version("3.9") < Some(MIN_PYTHON));
        assert_eq!(parse_python_version("Python"), None);
    }

    #[test]
    fn every_python_requirement_is_pinned_to_one_version() {
        let text = std::fs::read_to_string(workspace_root().join(REQUIREMENTS)).unwrap();
        let loose: Vec<&str> = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default().trim())
            .filter(|line| !line.is_empty())
            .filter(|line| {
                let Some((name, version)) = line.split_once("==") else { return true };
                name.is_empty() || version.is_empty() || version.contains(['*', ',', '<', '>'])
            })
            .collect();
        assert!(loose.is_empty(), "{REQUIREMENTS}: pin each package as name==version: {loose:?}");
    }

    /// The image tag defaults to the chart's appVersion, so it must be the
    /// version the binaries are built with.
    #[test]
    fn chart_app_version_is_the_workspace_version() {
        let root = workspace_root();
        let chart = std::fs::read_to_string(root.join("charts/bakery/Chart.yaml")).unwrap();
        let app_version = chart
            .lines()
            .find_map(|l| l.strip_prefix("appVersion:"))
            .map(|v| v.trim().trim_matches('"').to_string())
            .expect("Chart.yaml has an appVersion line");
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let package = manifest.split("[workspace.package]").nth(1).expect("a [workspace.package] table");
        let version = package
            .lines()
            .find_map(|l| l.strip_prefix("version = "))
            .map(|v| v.trim().trim_matches('"').to_string())
            .expect("[workspace.package] has a version");
        assert_eq!(app_version, version, "charts/bakery/Chart.yaml appVersion must equal the workspace version");
    }

    #[test]
    fn the_promtool_tests_load_the_rule_file_the_chart_embeds() {
        let root = workspace_root();
        let tests = std::fs::read_to_string(root.join(RULES_DIR).join(RULES_TESTS)).unwrap();
        assert!(tests.contains(&format!("rule_files:\n  - {RULES_FILE}\n")), "{RULES_TESTS} loads {RULES_FILE}");
        let template = std::fs::read_to_string(root.join("charts/bakery/templates/prometheusrule.yaml")).unwrap();
        assert!(
            template.contains(&format!(".Files.Get \"rules/{RULES_FILE}\"")),
            "the PrometheusRule embeds {RULES_FILE}"
        );
    }

    /// `check_chart.py values-table` rewrites what lies between these markers
    /// and fails when one is missing; a README edit must keep them.
    #[test]
    fn the_chart_readme_keeps_the_markers_of_its_generated_parts() {
        let readme = std::fs::read_to_string(workspace_root().join("charts/bakery/README.md")).unwrap();
        for part in ["oci-install", "values-table"] {
            let begin = readme.find(&format!("<!-- BEGIN generated: {part} ")).expect("a BEGIN marker");
            let end = readme.find(&format!("<!-- END generated: {part} -->")).expect("an END marker");
            assert!(begin < end, "{part}: BEGIN before END");
        }
    }

    #[test]
    fn the_chart_values_schema_is_json() {
        let text = std::fs::read_to_string(workspace_root().join("charts/bakery/values.schema.json")).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(schema["additionalProperties"], serde_json::Value::Bool(false));
    }
}
