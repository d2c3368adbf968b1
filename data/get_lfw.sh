#!/usr/bin/env bash
# Get LFW (deep-funneled images + the View 2 protocol file pairs.txt) into the layout the quick start
# reads:  DEST/raw/<Person>/<Person>_NNNN.jpg  and  DEST/pairs.txt
#
# Usage: bash data/get_lfw.sh DEST [FILE...]
#   FILE: an lfw-deepfunneled.tgz and/or a pairs.txt you already have; what is not given is downloaded
#   from the LFW site into DEST/ (removed once unpacked, or when its md5 is wrong). Each file is
#   checked against the md5 recorded for the published file (the LFW site lists none for these two;
#   the values are the ones torchvision's LFW loader checks);
#   $LFW_TGZ_MD5 / $LFW_PAIRS_MD5 replace them (a repacked archive); $LFW_BASE_URL names a mirror
#   holding the two files (default http://vis-www.cs.umass.edu/lfw). Running it again does nothing new:
#   DEST/raw appears complete or not at all. Archive members must be plain files or folders under
#   lfw-deepfunneled/: anything else (absolute names, '..', links, devices) stops the run.
set -euo pipefail
me=get_lfw.sh
die() { echo "$me: error: $*" >&2; exit 2; }

base_url=${LFW_BASE_URL:-http://vis-www.cs.umass.edu/lfw}
tgz_md5=${LFW_TGZ_MD5:-68331da3eb755a505a502b5aacb3c201}
pairs_md5=${LFW_PAIRS_MD5:-9f1ba174e4e1c508ff7cdf10ac338a7d}

[ $# -ge 1 ] || die "usage: bash data/get_lfw.sh DEST [lfw-deepfunneled.tgz] [pairs.txt]"
dest=$1; shift
tgz=; pairs=
for f in "$@"; do
  [ -f "$f" ] || die "$f: no such file"
  case "$f" in
    *.tgz|*.tar.gz) tgz=$f ;;
    *pairs*.txt) pairs=$f ;;
    *) die "$f: not an LFW archive (.tgz) or pairs file (pairs.txt)" ;;
  esac
done
mkdir -p "$dest" || die "$dest: cannot create the folder"

fetch() {  # fetch URL FILE: download to FILE (via FILE.part) unless FILE is there
  [ -f "$2" ] && return 0
  echo "downloading $1"
  local err
  err=$(curl -fsSL --retry 2 -o "$2.part" "$1" 2>&1) ||
    { rm -f "$2.part"; die "cannot download $1 (${err##*$'\n'}); give the path of a copy instead"; }
  mv "$2.part" "$2"
}

check_md5() {  # check_md5 FILE MD5: a downloaded file (*.download) that fails is removed
  local got
  got=$(md5sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] && return 0
  case "$1" in *.download) rm -f "$1" ;; esac
  die "$1: md5 mismatch (got $got, expected $2): not the published file"
}

if [ ! -f "$dest/pairs.txt" ]; then
  if [ -z "$pairs" ]; then
    fetch "$base_url/pairs.txt" "$dest/pairs.txt.download"
    pairs=$dest/pairs.txt.download
  fi
  check_md5 "$pairs" "$pairs_md5"
  cp "$pairs" "$dest/pairs.txt.tmp" && mv "$dest/pairs.txt.tmp" "$dest/pairs.txt"
  rm -f "$dest/pairs.txt.download"
  echo "wrote $dest/pairs.txt"
else
  check_md5 "$dest/pairs.txt" "$pairs_md5"
  echo "$dest/pairs.txt is present (md5 ok)"
fi

if [ -d "$dest/raw" ]; then
  echo "$dest/raw is present"
  exit 0
fi
if [ -z "$tgz" ]; then
  fetch "$base_url/lfw-deepfunneled.tgz" "$dest/lfw-deepfunneled.tgz.download"
  tgz=$dest/lfw-deepfunneled.tgz.download
fi
check_md5 "$tgz" "$tgz_md5"
work=$(mktemp -d "$dest/.raw.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 - "$tgz" "$work" lfw-deepfunneled <<'EOF' || exit 2
"""Unpack the members under TOP/ of a .tgz into OUT (TOP/ removed); refuse anything else."""
import os, sys, tarfile
archive, out, top = sys.argv[1:4]
MAX_MEMBERS, MAX_BYTES = 100000, 64 << 20   # LFW: 13,233 JPEGs of about 20 KB
def fail(what):
    sys.exit('get_lfw.sh: error: %s: %s' % (archive, what))
count = 0
try:
    with tarfile.open(archive, 'r:gz') as tar:
        for member in tar:
            count += 1
            if count > MAX_MEMBERS:
                fail('more than %d members' % MAX_MEMBERS)
            parts = [p for p in member.name.split('/') if p not in ('', '.')]
            if member.name.startswith('/') or not parts or parts[0] != top or '..' in parts or '\\' in member.name:
                fail('member %r is outside %s/: refused' % (member.name, top))
            if not (member.isfile() or member.isdir()):
                fail('member %r is not a plain file or folder: refused' % member.name)
            path = os.path.join(out, *parts[1:])
            if member.isdir():
                os.makedirs(path, exist_ok=True)
                continue
            if member.size > MAX_BYTES:
                fail('member %r declares %d bytes: refused' % (member.name, member.size))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tar.extractfile(member) as src, open(path, 'xb') as dst:
                dst.write(src.read(MAX_BYTES))
except (tarfile.TarError, OSError, EOFError) as e:
    fail('cannot unpack (%s)' % e)
people = [d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d))]
if not people:
    fail('no %s/<Person>/ folders in it' % top)
print('unpacked %d people' % len(people))
EOF
mv -T "$work" "$dest/raw"
trap - EXIT
rm -f "$dest/lfw-deepfunneled.tgz.download"
echo "wrote $dest/raw"
