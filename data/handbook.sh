#!/usr/bin/env bash
# data/handbook.sh OUTDIR — the built-in corpus: the Debian Administrator's Handbook
# (Debian package debian-handbook, CC-BY-SA 3.0 / GPL-2+) as plain UTF-8 text.
#
# Writes OUTDIR/handbook.en.txt (from html/en-US) and OUTDIR/handbook.de.txt (html/de-DE): one
# paragraph (<div class="para"> block) per line, HTML tags removed, entities decoded,
# whitespace collapsed, pages in file-name order. Deterministic for one package version.
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = --help ] || [ "$1" = -h ]; then
    echo "usage: data/handbook.sh OUTDIR   (writes OUTDIR/handbook.en.txt and handbook.de.txt)" >&2
    [ $# -eq 1 ] && exit 0 || exit 2
fi
out=$1
html=${XLMC_HANDBOOK_HTML:-/usr/share/doc/debian-handbook/html}
for d in en-US de-DE; do
    if [ ! -d "$html/$d" ]; then
        echo "handbook.sh: error: $html/$d is missing: install the handbook with" \
             "'apt-get install debian-handbook' (as root)" >&2
        exit 1
    fi
done
command -v perl >/dev/null || { echo "handbook.sh: error: perl is required" >&2; exit 1; }
mkdir -p "$out"

for pair in en:en-US de:de-DE; do
    lang=${pair%%:*}
    dst=$out/handbook.$lang.txt
    # A temporary name until complete: an interrupted run leaves no corpus that looks whole.
    find "$html/${pair#*:}" -maxdepth 1 -name '*.html' -print0 | LC_ALL=C sort -z |
        xargs -0 perl -CSD -0777 -ne '
            my %ent = (nbsp => " ", amp => "&", lt => "<", gt => ">", quot => "\"",
                       apos => "\x27", ndash => "\x{2013}", mdash => "\x{2014}",
                       hellip => "\x{2026}", laquo => "\x{ab}", raquo => "\x{bb}",
                       lsquo => "\x{2018}", rsquo => "\x{2019}", ldquo => "\x{201c}",
                       rdquo => "\x{201d}", bdquo => "\x{201e}", copy => "\x{a9}",
                       reg => "\x{ae}", trade => "\x{2122}", shy => "");
            while (/<div class="para"[^>]*>(.*?)<\/div>/gs) {
                my $t = $1;
                $t =~ s/<[^>]*>//g;
                $t =~ s/&#x([0-9a-fA-F]+);/chr(hex $1)/ge;
                $t =~ s/&#([0-9]+);/chr($1)/ge;
                $t =~ s/&([a-zA-Z]+);/exists $ent{$1} ? $ent{$1} : "&$1;"/ge;
                $t =~ s/[\s\x{a0}]+/ /g;
                $t =~ s/^ //;
                $t =~ s/ $//;
                print "$t\n" if length $t;
            }' >"$dst.tmp"
    mv "$dst.tmp" "$dst"
    echo "handbook.sh: $dst: $(wc -l <"$dst") paragraphs, $(wc -c <"$dst") bytes" >&2
done
