"""Small whole-slide files in the scanners' formats, written here with tifffile from real
H&E pixels (MoNuSeg tiles, 40x, tiled into a larger image).

Each writer lays the file out as the scanner does, as far as tifffile and
OpenSlide's readers tell the formats apart: the same TIFF structure (pyramid
pages, label, macro and thumbnail images), private tags and metadata text
(Aperio ImageDescription, NDPI tags, Philips and Leica XML, Ventana XMP). A
file is written once per level factor list; the pixels of every level are kept
so tests compare reads with what was written.
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

import numpy as np
import tifffile

MONUSEG = Path(__file__).resolve().parents[3] / "shared" / "data" / "monuseg" / "train" / "images"
JPEG = "jpeg"


def he_mosaic(height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 of real H&E tiles (1000 x 1000 px each) side by side."""
    files = sorted(MONUSEG.glob("*.tif"))
    assert files, f"MoNuSeg images expected in {MONUSEG} (see ../shared/data/README.md)"
    rows, cols = -(-height // 1000), -(-width // 1000)
    tiles = [tifffile.imread(files[i % len(files)]) for i in range(rows * cols)]
    grid = [np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)]
    return np.ascontiguousarray(np.concatenate(grid, axis=0)[:height, :width])


def area_down(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of factor x factor pixel blocks (floor of the size, as scanners' levels are)."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[:h * factor, :w * factor].reshape(h, factor, w, factor, -1)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def pyramid(image: np.ndarray, factors: tuple[int, ...]) -> list[np.ndarray]:
    """Level 0 and one level per factor (relative to level 0)."""
    return [image] + [area_down(image, f) for f in factors]


def _rgb(tw: tifffile.TiffWriter, data: np.ndarray, **kw) -> None:
    tw.write(data, photometric="rgb", metadata=None, **kw)


# ---------------------------------------------------------------- Aperio SVS


def write_svs(path: Path, levels: list[np.ndarray], mpp: float = 0.252, mag: int = 40,
              compression: str = JPEG, tile: int = 256) -> None:
    """Aperio SVS: level 0, a stripped thumbnail, the other levels, then label (subfiletype 1)
    and macro (subfiletype 9); every page's ImageDescription in Aperio's format."""
    h, w = levels[0].shape[:2]
    head = "Aperio Image Library v12.0.15 \r\n"
    meta = (f"|AppMag = {mag}|StripeWidth = 2040|ScanScope ID = SS1302|Filename = 1004486|Date = 12/29/09"
            f"|Time = 09:59:15|User = b414003d|MPP = {mpp:.4f}|Left = 25.691574|Top = 23.449873"
            f"|LineCameraSkew = -0.000424|Focus Offset = 0.000000|ImageID = 1004486")

    def description(level: np.ndarray | None) -> str:
        size = f" -> {level.shape[1]}x{level.shape[0]}" if level is not None else ""
        return f"{head}{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}){size} JPEG/RGB Q=70{meta}"

    with tifffile.TiffWriter(path) as tw:
        _rgb(tw, levels[0], tile=(tile, tile), compression=compression, description=description(None))
        thumb = area_down(levels[0], 8)
        _rgb(tw, thumb, rowsperstrip=16, compression=JPEG,
             description=f"{head}{w}x{h} -> {thumb.shape[1]}x{thumb.shape[0]} - {meta}")
        for level in levels[1:]:
            _rgb(tw, level, tile=(tile, tile), compression=compression, description=description(level))
        _rgb(tw, np.full((60, 80, 3), 230, np.uint8), compression="lzw", subfiletype=1,
             description=f"{head}label 80x60")
        macro = area_down(levels[0], 12)
        _rgb(tw, macro, compression=JPEG, subfiletype=9,
             description=f"{head}macro {macro.shape[1]}x{macro.shape[0]}")


# ---------------------------------------------------------------- generic tiled TIFF


def write_generic(path: Path, levels: list[np.ndarray], mpp: float = 0.5, unit: str = "CENTIMETER",
                  compression: str = "zlib", tile: int = 256) -> None:
    """A tiled pyramidal TIFF: reduced-resolution pages (subfiletype 1) after level 0, each
    with its own XResolution / YResolution in pixels per `unit` (CENTIMETER or INCH)."""
    per_unit = {"CENTIMETER": 1e4, "INCH": 25400.0}[unit]
    with tifffile.TiffWriter(path) as tw:
        for i, level in enumerate(levels):
            f = levels[0].shape[1] / level.shape[1]
            res = per_unit / (mpp * f)
            _rgb(tw, level, tile=(tile, tile), compression=compression, subfiletype=1 if i else 0,
                 resolution=(res, res), resolutionunit=unit)


# ---------------------------------------------------------------- Hamamatsu NDPI


def write_ndpi(path: Path, levels: list[np.ndarray], mpp: float = 0.2265, mag: float = 40.0) -> None:
    """Hamamatsu NDPI: each level one YCbCr 4:2:2 JPEG strip with restart markers and their
    positions in tag 65426 (McuStarts: readers decode it interval by interval, as tiles),
    Make and Model, the private tags 65420 (format flag), 65421 (source lens: the level's
    magnification), 65422-65424 (offsets from the slide centre, focal plane), 65427
    (reference), resolution in pixels per centimetre; then a macro page with source lens -1.
    Level sizes must be multiples of 16 (whole MCUs)."""
    classic = io.BytesIO()
    with tifffile.TiffWriter(classic) as tw:
        for i, level in enumerate(levels + [area_down(levels[0], 12)[:64, :64]]):
            macro = i == len(levels)
            jpeg, starts = _restart_jpeg(level)
            res = 1e4 / (mpp * levels[0].shape[1] / level.shape[1])
            tags = [(271, 2, 0, "Hamamatsu", True), (272, 2, 0, "C13210", True), (65420, 4, 1, 1, True),
                    (65421, 11, 1, -1.0 if macro else mag * level.shape[1] / levels[0].shape[1], True),
                    (65422, 9, 1, -1520, True), (65423, 9, 1, 3320, True), (65424, 9, 1, 0, True),
                    (65426, 4, len(starts), starts, True), (65427, 2, 0, "reference", True)]
            tw.write(iter([jpeg]), shape=level.shape, dtype=np.uint8, photometric="ycbcr", subsampling=(2, 1),
                     compression=JPEG, rowsperstrip=level.shape[0], metadata=None, resolution=(res, res),
                     resolutionunit="CENTIMETER", software="NDP.scan 3.2.4", extratags=tags)
    Path(path).write_bytes(ndpi_layout(classic.getvalue()))


def _restart_jpeg(image: np.ndarray, subsampling: str = "4:2:2") -> tuple[bytes, list[int]]:
    """A YCbCr JPEG (4:2:2: MCUs of 16 x 8 px; 4:4:4: 8 x 8) with a restart marker every few
    MCUs (intervals that divide an MCU row), and where each interval's data starts (after
    the SOS header, after each marker)."""
    from PIL import Image as PILImage

    mcu_w, mcu_h = (16, 8) if subsampling == "4:2:2" else (8, 8)
    mcus = image.shape[1] // mcu_w
    interval = max(d for d in range(1, 33) if mcus % d == 0)
    out = io.BytesIO()
    PILImage.fromarray(image).save(out, "JPEG", quality=90, subsampling=subsampling, restart_marker_blocks=interval)
    jpeg = out.getvalue()
    sos = jpeg.index(b"\xff\xda")
    starts = [sos + 2 + struct.unpack_from(">H", jpeg, sos + 2)[0]]
    starts += [m.end() for m in re.finditer(rb"\xff[\xd0-\xd7]", jpeg[starts[0]:])]
    starts = [starts[0]] + [starts[0] + s for s in starts[1:]]
    assert len(starts) == (image.shape[0] // mcu_h) * (mcus // interval)
    return jpeg, starts


def ndpi_layout(classic: bytes) -> bytes:
    """A little-endian classic TIFF in NDPI's layout: the header's and each IFD's next-IFD
    offset 8 bytes wide, and after each IFD's next offset 4 high bytes per entry (zero: the
    file is under 4 GB). The IFDs are rewritten at the end; strips and tag values stay put."""
    assert classic[:4] == b"II*\x00"
    out = bytearray(classic)
    ifds, offset = [], struct.unpack_from("<I", classic, 4)[0]
    while offset:
        count = struct.unpack_from("<H", classic, offset)[0]
        ifds.append(classic[offset + 2:offset + 2 + 12 * count])
        offset = struct.unpack_from("<I", classic, offset + 2 + 12 * count)[0]
    if len(out) % 2:
        out += b"\x00"
    first = len(out)
    for i, entries in enumerate(ifds):
        count = len(entries) // 12
        size = 2 + 12 * count + 8 + 4 * count
        following = len(out) + size if i + 1 < len(ifds) else 0
        out += struct.pack("<H", count) + entries + struct.pack("<Q", following) + bytes(4 * count)
    out[4:12] = struct.pack("<Q", first)  # bytes 8-12 belonged to the old first IFD, now unused
    return bytes(out)


# ---------------------------------------------------------------- Philips TIFF


def philips_xml(levels: list[np.ndarray], mpp: float, derivation: str) -> str:
    """Philips DP ImageDescription: one WSI scanned image with a pixel-data representation
    per level (DICOM_PIXEL_SPACING in mm, rows then columns, each value quoted)."""
    def spacing(f: float) -> str:
        v = f"{mpp * f / 1000:.9g}"
        return f"&quot;{v}&quot; &quot;{v}&quot;"

    reps = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        f'<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" PMSVR="IDoubleArray">'
        f'{spacing(levels[0].shape[1] / level.shape[1])}</Attribute>'
        f'<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_NUMBER" Group="0x101D" Element="0x100B" '
        f'PMSVR="IUInt16">{i}</Attribute></DataObject>'
        for i, level in enumerate(levels))
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n<DataObject ObjectType="DPUfsImport">'
        '<Attribute Name="DICOM_MANUFACTURER" Group="0x0008" Element="0x0070" PMSVR="IString">PHILIPS</Attribute>'
        '<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray"><Array>'
        '<DataObject ObjectType="DPScannedImage">'
        '<Attribute Name="DICOM_DERIVATION_DESCRIPTION" Group="0x0008" Element="0x2111" PMSVR="IString">'
        f'{derivation}</Attribute>'
        '<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" PMSVR="IDoubleArray">'
        f'{spacing(1)}</Attribute>'
        '<Attribute Name="PIM_DP_IMAGE_TYPE" Group="0x301D" Element="0x1004" PMSVR="IString">WSI</Attribute>'
        '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" Group="0x1001" Element="0x8B01" '
        f'PMSVR="IDataObjectArray"><Array>{reps}</Array></Attribute>'
        '</DataObject></Array></Attribute></DataObject>'
    )


def write_philips(path: Path, levels: list[np.ndarray], mpp: float = 0.25, tile: int = 256,
                  derivation: str = "tiff-useBigTIFF=1-useRgb=0-levels=10002,10000,10001-processing=0-q80") -> None:
    """Philips TIFF: tiled JPEG levels, each but the first reduced-resolution and padded to
    whole tiles (as the scanner pads them: the true size follows from the pixel spacing),
    the XML in level 0's ImageDescription, Software "Philips DP", then a label page."""
    xml = philips_xml(levels, mpp, derivation)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, level in enumerate(levels):
            if i:  # whole tiles, padded with white
                ph, pw = -(-level.shape[0] // tile) * tile, -(-level.shape[1] // tile) * tile
                padded = np.full((ph, pw, 3), 255, np.uint8)
                padded[:level.shape[0], :level.shape[1]] = level
                level = padded
            _rgb(tw, level, tile=(tile, tile), compression=JPEG, subfiletype=1 if i else 0,
                 description=xml if i == 0 else f"level={i}", software="Philips DP v1.0")
        _rgb(tw, np.full((60, 80, 3), 230, np.uint8), compression="lzw", description="Label",
             software="Philips DP v1.0")


# ---------------------------------------------------------------- Leica SCN


SCN_NS = "http://www.leica-microsystems.com/scn/2010/10/01"


def scn_xml(levels: list[np.ndarray], macro: np.ndarray, mpp: float, objective: int,
            offset_nm: tuple[int, int], slide_nm: tuple[int, int]) -> str:
    """Leica SCN XML: a collection (the slide, sizes in nm) with a macro image covering it and
    a brightfield main image placed at `offset_nm`, each listing its levels' IFDs."""
    def dims(images: list[np.ndarray], first_ifd: int) -> str:
        return "".join(f'<dimension sizeX="{a.shape[1]}" sizeY="{a.shape[0]}" r="{r}" ifd="{first_ifd + r}"/>'
                       for r, a in enumerate(images))

    def image(name: str, images: list[np.ndarray], ifd: int, view: str, lens: str) -> str:
        return (f'<image name="{name}" uuid="urn:uuid:{name}"><creationDate>2012-06-14T10:51:33.80Z</creationDate>'
                '<device model="Leica SCN400;Leica SCN" version="1.4.0.10470 2011/05/11 10:16:24;1.4.0.10470"/>'
                f'<pixels sizeX="{images[0].shape[1]}" sizeY="{images[0].shape[0]}">{dims(images, ifd)}</pixels>'
                f'{view}<scanSettings><objectiveSettings><objective>{lens}</objective></objectiveSettings>'
                '<illuminationSettings><numericalAperture>0.5</numericalAperture>'
                '<illuminationSource>brightfield</illuminationSource></illuminationSettings></scanSettings></image>')

    h, w = levels[0].shape[:2]
    main_view = (f'<view sizeX="{round(w * mpp * 1000)}" sizeY="{round(h * mpp * 1000)}" '
                 f'offsetX="{offset_nm[0]}" offsetY="{offset_nm[1]}" spacingZ="0"/>')
    macro_view = f'<view sizeX="{slide_nm[0]}" sizeY="{slide_nm[1]}" offsetX="0" offsetY="0" spacingZ="0"/>'
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<scn xmlns="{SCN_NS}">'
            f'<collection name="test" uuid="urn:uuid:collection" sizeX="{slide_nm[0]}" sizeY="{slide_nm[1]}">'
            '<barcode>MTIzNDU=</barcode>'
            + image("macro", [macro], 0, macro_view, "0.625")
            + image("main", levels, 1, main_view, str(objective))
            + "</collection></scn>")


def write_scn(path: Path, levels: list[np.ndarray], mpp: float = 0.252, objective: int = 40,
              tile: int = 256) -> None:
    """Leica SCN: a BigTIFF whose first IFD (the macro image of the whole slide) holds the XML,
    then the main image's levels as tiled JPEG pages."""
    h, w = levels[0].shape[:2]
    slide_nm = (round(3 * w * mpp * 1000), round(2 * h * mpp * 1000))
    offset_nm = (round(w * mpp * 1000), round(0.5 * h * mpp * 1000))
    macro = area_down(np.pad(levels[0], ((h // 2, h - h // 2), (w, w), (0, 0)), constant_values=240), 16)
    xml = scn_xml(levels, macro, mpp, objective, offset_nm, slide_nm)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        _rgb(tw, macro, tile=(tile, tile), compression=JPEG, description=xml)
        for level in levels:
            res = 1e4 / (mpp * levels[0].shape[1] / level.shape[1])
            _rgb(tw, level, tile=(tile, tile), compression=JPEG, resolution=(res, res), resolutionunit="CENTIMETER")


# ---------------------------------------------------------------- Ventana BIF


def write_bif(path: Path, levels: list[np.ndarray], mpp: float = 0.25, mag: float = 40.0, tile: int = 256) -> None:
    """Ventana BIF (a "Ventana TIFF": no tile overlaps to stitch): the label image first with
    the iScan XMP (Magnification, ScanRes in um/px), a thumbnail, then the levels described
    "level=N mag=M quality=90"; Software "ScanOutputManager"."""
    xmp = (f'<?xml version="1.0" encoding="utf-8"?><iScan BaseFileName="test" Magnification="{mag:g}" '
           f'ScanRes="{mpp}" UnitNumber="BI10N0294" ScannerModel="VENTANA DP 200" BuildVersion="1.1.0.15854" '
           'FocusMode="1" Mode="Brightfield"><AOI0 Left="0" Top="0" Right="100" Bottom="100"/></iScan>')
    software = "ScanOutputManager 1.1.0.15854"
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        _rgb(tw, np.full((60, 80, 3), 230, np.uint8), compression="lzw", description="Label_Image",
             software=software, extratags=[(700, 1, len(xmp), xmp.encode(), True)])
        _rgb(tw, area_down(levels[0], 8), compression=JPEG, description="Thumbnail", software=software)
        for i, level in enumerate(levels):
            f = levels[0].shape[1] / level.shape[1]
            _rgb(tw, level, tile=(tile, tile), compression=JPEG, software=software,
                 description=f"level={i} mag={mag / f:g} quality=90")


# ---------------------------------------------------------------- Hamamatsu VMS (OpenSlide only)


def write_vms(folder: Path, image: np.ndarray, mpp: float = 0.46, lens: float = 20.0) -> Path:
    """Hamamatsu VMS, a format only OpenSlide reads: a key file naming one JPEG of the whole
    image and a map JPEG (the image at 1/8), both YCbCr 4:4:4 with restart markers (OpenSlide
    decodes them interval by interval), the physical size in nm and the source lens. Sizes
    must be multiples of 64. Returns the key file; the decoded JPEG is `vms_pixels(folder)`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "slide.jpg").write_bytes(_restart_jpeg(image, "4:4:4")[0])
    (folder / "slide_map.jpg").write_bytes(_restart_jpeg(area_down(image, 8), "4:4:4")[0])
    h, w = image.shape[:2]
    key = folder / "slide.vms"
    key.write_text("[Virtual Microscope Specimen]\nNoLayers=1\nNoJpegColumns=1\nNoJpegRows=1\n"
                   "ImageFile=slide.jpg\nMapFile=slide_map.jpg\n"
                   f"PhysicalWidth={round(w * mpp * 1000)}\nPhysicalHeight={round(h * mpp * 1000)}\n"
                   f"SourceLens={lens:g}\nXOffsetFromSlideCentre=0\nYOffsetFromSlideCentre=0\n")
    return key


def vms_pixels(folder: Path) -> np.ndarray:
    """The pixels of a VMS's image JPEG, decoded whole."""
    from PIL import Image as PILImage

    with PILImage.open(folder / "slide.jpg") as jpeg:
        return np.asarray(jpeg.convert("RGB"))


def truncated_copy(path: Path, out: Path, keep: float = 0.6) -> Path:
    """The first `keep` of a file's bytes (an interrupted copy)."""
    data = Path(path).read_bytes()
    out.write_bytes(data[:int(len(data) * keep)])
    return out
