"""The module ladder of docs/architecture.md: every #include of a project header points down it
(or stays in its own module). A header or source file that includes a module above its own fails
here, naming the file, the line and both modules."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Lower rungs first; modules on one rung may not include each other.
LADDER = [["core"], ["config"], ["io"], ["kernels"], ["models"], ["tokenizer"], ["infer"], ["data"], ["dist"],
          ["train", "eval"], ["serve"], ["cli"]]
RUNG = {module: i for i, rung in enumerate(LADDER) for module in rung}
INCLUDE = re.compile(r'^\s*#\s*include\s+"(?:phi/)?([a-z_]+)/[^"]+"')


def module_of(path):
    rel = path.relative_to(REPO)
    if rel.parts[0] == "include":
        return rel.parts[2]
    return rel.parts[1]


def violations():
    found = []
    files = list((REPO / "include" / "phi").rglob("*.h")) + [p for p in (REPO / "src").rglob("*")
                                                              if p.suffix in (".h", ".cpp", ".cu", ".cuh")]
    for path in files:
        module = module_of(path)
        if module not in RUNG:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            match = INCLUDE.match(line)
            if not match or match.group(1) not in RUNG or match.group(1) == module:
                continue
            dep = match.group(1)
            if RUNG[dep] >= RUNG[module]:
                found.append(f"{path.relative_to(REPO)}:{number}: {module} includes {dep} ({line.strip()})")
    return found


def test_every_include_points_down_the_ladder():
    assert violations() == []


def test_the_check_catches_an_upward_include(tmp_path, monkeypatch):
    fake = tmp_path / "repo"
    (fake / "include" / "phi" / "core").mkdir(parents=True)
    (fake / "src").mkdir()
    (fake / "include" / "phi" / "core" / "bad.h").write_text('#include "phi/models/transformer.h"\n')
    monkeypatch.setattr(__import__(__name__), "REPO", fake)
    assert [v.split(": ", 1)[1].split(" (")[0] for v in violations()] == ["core includes models"]
