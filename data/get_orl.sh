#!/usr/bin/env bash
# Get the AT&T "Database of Faces" (formerly the ORL Database of Faces: 40 people x 10 grayscale
# 92x112 photos) into the layout the quick start reads:  DEST/s1/1.pgm ... DEST/s40/10.pgm
#
# Usage: bash data/get_orl.sh DEST [att_faces.zip]
#   Without a file, att_faces.zip is downloaded from the AT&T archive at Cambridge. No
#   checksum is published for it, so none is checked unless $ORL_ZIP_MD5 is set. Only members named
#   [<folder>/]s<N>/<M>.pgm (or .png) are unpacked; a link, an absolute name or '..' stops the run.
#   Running it again does nothing new: DEST appears complete or not at all.
set -euo pipefail
me=get_orl.sh
die() { echo "$me: error: $*" >&2; exit 2; }

url=https://www.cl.cam.ac.uk/Research/DTG/attarchive/pub/data/att_faces.zip

[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: bash data/get_orl.sh DEST [att_faces.zip]"
dest=$1
zip=${2:-}
[ -z "$zip" ] || [ -f "$zip" ] || die "$zip: no such file"
if [ -e "$dest" ]; then
  [ -d "$dest/s1" ] || die "$dest exists and holds no s1/: give a new folder"
  echo "$dest is present"
  exit 0
fi
mkdir -p "$(dirname "$dest")" || die "$(dirname "$dest"): cannot create the folder"
work=$(mktemp -d "${dest%/}.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "$zip" ]; then
  zip=$work/att_faces.zip
  echo "downloading $url"
  err=$(curl -fsSL --retry 2 -o "$zip" "$url" 2>&1) ||
    die "cannot download $url (${err##*$'\n'}); give the path of a copy instead"
fi
if [ -n "${ORL_ZIP_MD5:-}" ]; then
  got=$(md5sum "$zip" | cut -d' ' -f1)
  [ "$got" = "$ORL_ZIP_MD5" ] || die "$zip: md5 mismatch (got $got, expected $ORL_ZIP_MD5)"
fi
python3 - "$zip" "$work" <<'EOF' || exit 2
"""Unpack the s<N>/<M>.pgm|png members of a .zip into OUT/s<N>/; refuse links and escaping names."""
import os, re, stat, sys, zipfile
archive, out = sys.argv[1:3]
MAX_MEMBERS, MAX_BYTES = 10000, 16 << 20   # ORL: 400 images of 10 KB
IMAGE = re.compile(r'^(?:[^/]+/)?(s\d{1,3})/(\d{1,3}\.(?:pgm|png))$')
def fail(what):
    sys.exit('get_orl.sh: error: %s: %s' % (archive, what))
people = set()
try:
    with zipfile.ZipFile(archive) as z:
        members = z.infolist()
        if len(members) > MAX_MEMBERS:
            fail('more than %d members' % MAX_MEMBERS)
        for member in members:
            name = member.filename
            parts = name.replace('\\', '/').split('/')
            if name.startswith(('/', '\\')) or '..' in parts or re.match(r'^[A-Za-z]:', name):
                fail('member %r escapes the destination: refused' % name)
            if stat.S_ISLNK(member.external_attr >> 16):
                fail('member %r is a link: refused' % name)
            match = IMAGE.match(name)
            if match is None:
                continue
            if member.file_size > MAX_BYTES:
                fail('member %r declares %d bytes: refused' % (name, member.file_size))
            folder = os.path.join(out, match.group(1))
            os.makedirs(folder, exist_ok=True)
            with z.open(member) as src, open(os.path.join(folder, match.group(2)), 'xb') as dst:
                dst.write(src.read(MAX_BYTES))
            people.add(match.group(1))
except (zipfile.BadZipFile, OSError, EOFError) as e:
    fail('cannot unpack (%s)' % e)
if not people:
    fail('no s<N>/<M>.pgm images in it')
print('unpacked %d people' % len(people))
EOF
rm -f "$work/att_faces.zip"
mv -T "$work" "$dest"
trap - EXIT
echo "wrote $dest"
