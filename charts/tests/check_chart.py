"""The chart steps `cargo xtask chart` runs before the tests, one per command:

  check_chart.py lint-render OUT_DIR   helm lint --strict and render every variant
                                       (default values, each ci/*.yaml) into OUT_DIR
  check_chart.py validate OUT_DIR      validate every rendered object strictly against
                                       Kubernetes 1.30 and the newest known release
  check_chart.py refuse-bad-values     show that each bad-values/*.yaml is refused by
                                       values.schema.json, with Helm's message
  check_chart.py values-table [--write]
                                       check (or rewrite) the README's generated values
                                       table and OCI install commands (values_table.py)

Each prints one line per item and exits 1 on the first failing step, after
printing every problem of that step.
"""

from __future__ import annotations

import pathlib
import sys

import helm_python as helm
import yaml

import chartlib
import values_table


def lint_render(out_dir: pathlib.Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.yaml"):
        stale.unlink()
    failures = 0
    print(f"  Helm engine {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__})")
    for name, values in chartlib.variants():
        report = chartlib.lint(values)
        # severity: 1 info, 2 warning, 3 error; --strict makes warnings fail too
        bad = [m for m in report["messages"] if m["severity"] >= 2]
        for message in report["messages"]:
            level = {1: "info", 2: "WARNING", 3: "ERROR"}.get(message["severity"], "?")
            print(f"  lint {name}: {level}: {message['path']}: {message['error'].strip()}")
        if bad or report["errors"]:
            failures += 1
            print(f"  lint {name}: FAILED")
            continue
        try:
            rendered = chartlib.render(values)
        except helm.HelmError as error:
            failures += 1
            print(f"  render {name}: FAILED: {error}")
            continue
        path = out_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(rendered.objects, sort_keys=False))
        kinds = ", ".join(sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered.objects))
        print(f"  lint+render {name}: ok, {len(rendered.objects)} objects -> {path}")
        print(f"      {kinds}")
    return 1 if failures else 0


def validate(out_dir: pathlib.Path) -> int:
    files = sorted(out_dir.glob("*.yaml"))
    if not files:
        print(f"  nothing to validate in {out_dir}: run lint-render first")
        return 1
    versions = [chartlib.MIN_KUBE_VERSION, chartlib.newest_kube_version()]
    failures = 0
    for path in files:
        objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
        for version in versions:
            checked_against: set[str] = set()
            for obj in objects:
                try:
                    checked_against.add(chartlib.validate(obj, version))
                except ValueError as error:
                    failures += 1
                    print(f"  {path.name} @ {version}: FAILED: {error}")
            print(f"  {path.name} @ Kubernetes {version}: {len(objects)} objects checked against "
                  f"{'; '.join(sorted(checked_against))}")
    return 1 if failures else 0


def refuse_bad_values() -> int:
    failures = 0
    for path in sorted(chartlib.BAD_VALUES_DIR.glob("*.yaml")):
        values = chartlib.load_values(path)
        try:
            chartlib.render(values)
        except helm.HelmValuesError as error:
            message = str(error).strip().replace("\n", "\n      ")
            print(f"  {path.name}: refused, as it should be:\n      {message}")
            continue
        except helm.HelmError as error:
            failures += 1
            print(f"  {path.name}: FAILED: refused, but not by the schema: {error}")
            continue
        failures += 1
        print(f"  {path.name}: FAILED: the chart accepted it")
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "lint-render":
        return lint_render(pathlib.Path(argv[2]))
    if len(argv) == 3 and argv[1] == "validate":
        return validate(pathlib.Path(argv[2]))
    if len(argv) == 2 and argv[1] == "refuse-bad-values":
        return refuse_bad_values()
    if len(argv) in (2, 3) and argv[1] == "values-table" and argv[2:] in ([], ["--write"]):
        return values_table.check(write=argv[2:] == ["--write"])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
