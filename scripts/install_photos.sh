#!/usr/bin/env bash
# Install the Debian wallpaper packages whose photographs serve as material for synthetic
# stereo training pairs (see docs/data.md). Needs root (or sudo) and apt.
#
#   mate-backgrounds             /usr/share/backgrounds/mate/nature/*.jpg   (GPL-2+)
#   lomiri-wallpapers-16.04      /usr/share/backgrounds/*.jpg               (CC-BY(-SA)-4.0)
#   plasma-workspace-wallpapers  /usr/share/wallpapers/*/contents/images/*  (LGPL/CC)
#
# Then fetches (without installing) 88 more photographs into DIR (default data/photos),
# one folder per package with its licence beside the photos: enlightenment-data, lxqt-themes,
# palapeli-data, tuxpaint-data, a few single photos from other Debian packages, Debian trixie's
# budgie-backgrounds (city and building photos), and PyPI
# mvtb-data==1.6.1 (see scripts/fetch_photos.py for the lists), 39 sub-megapixel photos of
# mvtb-data into SMALL_DIR (default data/photos_small), and 64 photos of GCompris (monuments,
# musicians) and forensics-samples-files (phone photos) into MORE_DIR (default
# data/photos_more), each a folder of its own.
#
#   bash scripts/install_photos.sh [DIR [SMALL_DIR [MORE_DIR]]]
set -euo pipefail

photos_dir="${1:-data/photos}"
small_dir="${2:-data/photos_small}"
more_dir="${3:-data/photos_more}"
python="${PYTHON:-python3}"

packages=(mate-backgrounds lomiri-wallpapers-16.04 plasma-workspace-wallpapers)

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_photos.sh: apt-get not found; this script is for Debian/Ubuntu" >&2
    exit 2
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install_photos.sh: run as root or install sudo" >&2
        exit 2
    fi
fi

"${sudo[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends \
    "${packages[@]}"

"$python" "$(dirname "$0")/fetch_photos.py" "$photos_dir"
"$python" "$(dirname "$0")/fetch_photos.py" --small "$small_dir"
"$python" "$(dirname "$0")/fetch_photos.py" --more "$more_dir"

echo "Installed: ${packages[*]}"
echo "Photo folders:"
for d in /usr/share/backgrounds/mate/nature /usr/share/backgrounds /usr/share/wallpapers \
         "$photos_dir" "$small_dir" "$more_dir"; do
    if [ -d "$d" ]; then echo "  $d"; fi
done
