#!/usr/bin/env bash
# tests/slurm/make_corpus.sh — made corpus/en.txt and corpus/de.txt (committed) for the Slurm
# test: the first paragraphs of four chapters of the Debian Administrator's Handbook
# (<div class="para"> blocks, Debian package debian-handbook, CC-BY-SA 3.0 / GPL-2+), HTML tags stripped, one paragraph
# per line, only paragraphs of 40+ characters.
set -euo pipefail
cd "$(dirname "$0")"
html=/usr/share/doc/debian-handbook/html
mkdir -p corpus
for pair in en:en-US de:de-DE; do
    lang=${pair%%:*}
    dir=$html/${pair#*:}
    cat "$dir"/{packaging-system,apt,basic-configuration,unix-services}.html |
        tr '\n\t' '  ' | sed 's|<div class="para"[^>]*>|\n@@PARA@@|g; s|</div>|\n|g' | grep '^@@PARA@@' |
        sed 's/@@PARA@@//; s/<[^>]*>//g; s/&nbsp;/ /g; s/&lt;/</g; s/&gt;/>/g; s/&quot;/"/g; s/&#39;/'"'"'/g;
             s/&amp;/\&/g; s/  */ /g; s/^ //; s/ $//' |
        awk 'length($0) >= 40' | head -n 300 >"corpus/$lang.txt"
    echo "corpus/$lang.txt: $(wc -l <"corpus/$lang.txt") lines, $(wc -c <"corpus/$lang.txt") bytes"
done
