"""Pixel size and objective power from each format's metadata text (pure parsers)."""

import pytest

from biounet.read import slide_meta
from tests.read.wsi_files import philips_xml, scn_xml

UM = "micrometer"

# Level 0's ImageDescription of OpenSlide's public test slide CMU-1.svs (Aperio ScanScope, 20x).
CMU1 = ("Aperio Image Library v10.0.51\r\n46920x33014 [0,100 46000x32914] (256x256) JPEG/RGB Q=30|AppMag = 20|"
        "StripeWidth = 2040|ScanScope ID = CPAPERIOCS|Filename = CMU-1|Date = 12/29/09|Time = 09:59:15|"
        "User = b414003d-95c6-48b0-9369-8010ed517ba7|Parmset = USM Filter|MPP = 0.4990|Left = 25.691574|"
        "Top = 23.449873|LineCameraSkew = -0.000424|LineAreaXOffset = 0.019265|LineAreaYOffset = -0.000313|"
        "Focus Offset = 0.000000|ImageID = 1004486|OriginalWidth = 46920|Originalheight = 33014|Filtered = 5|"
        "OriginalWidth = 46000|OriginalHeight = 32914")


def test_aperio():
    info = slide_meta.aperio(CMU1)
    assert info.pixel_size == {"y": (0.499, UM), "x": (0.499, UM)}
    assert info.objective_power == 20.0 and info.source == "Aperio ImageDescription (MPP, AppMag)"
    no_mpp = slide_meta.aperio("Aperio Image Library v11.2.1\r\n2220x2967 -> 574x768 - |AppMag = 40|MPP = 0")
    assert no_mpp.pixel_size == {} and no_mpp.objective_power == 40.0
    assert slide_meta.aperio("Aperio Image Library v11\r\nlabel 415x422") == slide_meta.ScanInfo()


def test_resolution_tags():
    assert slide_meta.resolution((40000, 1), (40000, 1), 3) == {"y": (0.25, UM), "x": (0.25, UM)}  # px/cm
    assert slide_meta.resolution((101600, 1), (50800, 1), 2) == {"y": (0.5, UM), "x": (0.25, UM)}  # px/inch
    assert slide_meta.resolution((1, 1), (1, 1), 3) == {}  # tifffile's default: says nothing
    assert slide_meta.resolution((40000, 1), (40000, 1), 1) == {}  # no unit
    assert slide_meta.resolution((0, 1), (40000, 1), 3) == {"y": (0.25, UM)}


def test_ndpi():
    info = slide_meta.ndpi(40.0, {"y": (0.2265, UM), "x": (0.2265, UM)})
    assert info.objective_power == 40.0 and info.source == "NDPI tags (resolution, Magnification)"
    assert slide_meta.ndpi(-1.0, {}).objective_power is None  # a macro page's source lens


def test_philips():
    import numpy as np

    levels = [np.zeros((400, 600, 3), np.uint8), np.zeros((100, 150, 3), np.uint8)]
    xml = philips_xml(levels, 0.2273, "tiff-useBigTIFF=1-useRgb=0-levels=10002,10000,10001-processing=0-q80")
    info = slide_meta.philips(xml)
    assert info.pixel_size["x"] == pytest.approx((0.2273, UM)) and info.pixel_size["y"] == pytest.approx((0.2273, UM))
    assert info.objective_power is None and info.source == "Philips XML (DICOM_PIXEL_SPACING)"
    forty = slide_meta.philips(philips_xml(levels, 0.25, "tiff-useBigTIFF=1-levels=40,10,2-q80"))
    assert forty.objective_power == 40.0
    rows_cols = xml.replace("&quot;0.0002273&quot; &quot;0.0002273&quot;", "&quot;0.0005&quot; &quot;0.00025&quot;")
    assert slide_meta.philips(rows_cols).pixel_size == {"y": (0.5, UM), "x": (0.25, UM)}  # rows, then columns


def test_leica_scn_main_image_and_scale():
    import numpy as np

    levels = [np.zeros((300, 400, 3), np.uint8), np.zeros((75, 100, 3), np.uint8)]
    xml = scn_xml(levels, np.zeros((60, 90, 3), np.uint8), 0.5, 20, (1_000_000, 2_000_000), (25_000_000, 75_000_000))
    images = slide_meta.scn_images(xml)
    assert [(i["name"], i["ifd"], i["macro"]) for i in images] == [("macro", 0, True), ("main", 1, False)]
    main = slide_meta.scn_main_image(xml)
    assert main["name"] == "main"
    info = slide_meta.scn(main)
    assert info.pixel_size == {"y": (0.5, UM), "x": (0.5, UM)} and info.objective_power == 20.0


def test_ventana_bif():
    xmp = '<?xml version="1.0"?><iScan Magnification="40" ScanRes="0.232500" UnitNumber="BI10N0294"/>'
    info = slide_meta.bif(xmp)
    assert info.pixel_size == {"y": (0.2325, UM), "x": (0.2325, UM)} and info.objective_power == 40.0
    nested = '<Metadata><iScan Magnification="20" ScanRes="0.465"/></Metadata>'
    assert slide_meta.bif(nested).objective_power == 20.0
    assert slide_meta.bif("<Metadata/>") == slide_meta.ScanInfo()


def test_ome_objective_and_units():
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Instrument ID="Instrument:0">'
           '<Objective ID="Objective:0" NominalMagnification="20"/><Objective ID="Objective:1" NominalMagnification="63"/>'
           '</Instrument><Image ID="Image:0"><ObjectiveSettings ID="Objective:1"/>'
           '<Pixels PhysicalSizeX="103" PhysicalSizeXUnit="nm" PhysicalSizeY="0.103" PhysicalSizeZ="0.3"/></Image></OME>')
    info = slide_meta.ome(xml)
    assert info.pixel_size == {"x": (103.0, "nanometer"), "y": (0.103, UM), "z": (0.3, UM)}
    assert info.objective_power == 63.0


def test_openslide_properties():
    info = slide_meta.openslide({"openslide.mpp-x": "0.2527", "openslide.mpp-y": "0.2526",
                                 "openslide.objective-power": "40", "openslide.vendor": "mirax"})
    assert info.pixel_size == {"y": (0.2526, UM), "x": (0.2527, UM)} and info.objective_power == 40.0
    assert info.source == "OpenSlide properties (mirax, mpp, objective-power)"
    assert slide_meta.openslide({"openslide.mpp-x": "nan", "openslide.vendor": "generic-tiff"}) == slide_meta.ScanInfo()
