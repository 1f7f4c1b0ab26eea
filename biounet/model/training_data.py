"""What a model was trained on, and the terms that come with it.

A model file records its training data (`ModelSpec.training_data`): the data set's
name, its licence (an SPDX id, where the data has one), the works to cite (text and
DOI), one line stating the terms of use, and the licence that weights trained on the
data must carry where the data restricts their use (MoNuSeg's share-alike, ISBI
2012's non-commercial term). `biounet info` shows it and `biounet export` carries it
into a bioimage.io package: licence, citations, documentation, and a link to the
data set where bioimage.io has one.

No heavy imports: the CLI reads this without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class Citation:
    """A work to cite: its reference as text and its DOI (without "https://doi.org/")."""

    text: str
    doi: str


@dataclass(frozen=True)
class TrainingData:
    """A training data set's facts and terms.

    name: the data set (e.g. "BBBC039").
    license: its SPDX licence id (None: it has no licence an SPDX id names, see `terms`).
    terms: one line stating the terms of use of the data and of what is derived from it.
    cite: the works its owners ask users to cite.
    weights_license: the SPDX licence of weights trained on it, where the data restricts their
        use (None: no restriction; a package then takes the licence the user chooses).
    bioimageio: the data set's id in the bioimage.io collection (None: bioimage.io has none).
    """

    name: str
    license: str | None
    terms: str
    cite: tuple[Citation, ...] = field(default_factory=tuple)
    weights_license: str | None = None
    bioimageio: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["cite"] = [asdict(c) for c in self.cite]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingData":
        """The facts as a model file stores them; unknown or missing keys are refused (ValueError)."""
        if not isinstance(data, dict):
            raise ValueError(f"training_data must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training_data keys: {sorted(unknown)}")
        data = dict(data)
        cite = []
        for entry in data.pop("cite", []):
            if not isinstance(entry, dict) or set(entry) != {"text", "doi"}:
                raise ValueError(f"a training_data citation needs exactly text and doi, got {entry!r}")
            cite.append(Citation(**entry))
        return cls(cite=tuple(cite), **data)


# The works the data sets' owners ask users to cite.
CAICEDO_2019 = Citation("Caicedo, J.C. et al.: Evaluation of Deep Learning Strategies for Nucleus Segmentation in "
                        "Fluorescence Images. Cytometry A 95(9), 952-965 (2019).", "10.1002/cyto.a.23863")
LJOSA_2012 = Citation("Ljosa, V., Sokolnicki, K.L., Carpenter, A.E.: Annotated high-throughput microscopy image sets "
                      "for validation. Nature Methods 9(7), 637 (2012).", "10.1038/nmeth.2083")
CARDONA_2010 = Citation("Cardona, A. et al.: An Integrated Micro- and Macroarchitectural Analysis of the Drosophila "
                        "Brain by Computer-Assisted Serial Section Electron Microscopy. PLoS Biol 8(10), e1000502 "
                        "(2010).", "10.1371/journal.pbio.1000502")
TRAKEM2 = Citation("Cardona, A. et al.: TrakEM2 Software for Neural Circuit Reconstruction. PLoS ONE 7(6), e38011 "
                   "(2012).", "10.1371/journal.pone.0038011")
ISBI_CHALLENGE = Citation("Arganda-Carreras, I. et al.: Crowdsourcing the creation of image segmentation algorithms "
                          "for connectomics. Front. Neuroanat. 9, 142 (2015).", "10.3389/fnana.2015.00142")
CAICEDO_2019_DSB = Citation("Caicedo, J.C. et al.: Nucleus segmentation across imaging experiments: the 2018 Data "
                            "Science Bowl. Nature Methods 16, 1247-1253 (2019).", "10.1038/s41592-019-0612-7")
KUMAR_2017 = Citation("Kumar, N. et al.: A Dataset and a Technique for Generalized Nuclear Segmentation for "
                      "Computational Pathology. IEEE TMI 36(7), 1550-1560 (2017).", "10.1109/TMI.2017.2677499")
KUMAR_2020 = Citation("Kumar, N. et al.: A Multi-Organ Nucleus Segmentation Challenge. IEEE TMI 39(5), 1380-1391 "
                      "(2020).", "10.1109/TMI.2019.2947628")

BBBC039 = TrainingData(
    "BBBC039", "CC0-1.0",
    "CC0 1.0 (public domain dedication): no restriction; cite Caicedo et al. 2019 and the Broad Bioimage "
    "Benchmark Collection (Ljosa et al. 2012).",
    (CAICEDO_2019, LJOSA_2012))

# The generalist nuclei models: BBBC039's training images and the dark-background fluorescence of the
# 2018 Data Science Bowl's stage-1 training set (BBBC038v1, with the community's mask fixes), both CC0.
BBBC039_DSB2018 = TrainingData(
    "BBBC039 + DSB2018 stage 1 (fluorescence)", "CC0-1.0",
    "CC0 1.0 (public domain dedication) for both: no restriction; cite Caicedo et al. 2019 (both papers) and "
    "the Broad Bioimage Benchmark Collection (Ljosa et al. 2012).",
    (CAICEDO_2019, CAICEDO_2019_DSB, LJOSA_2012))

# No SPDX licence: its owners allow non-commercial segmentation software and ask for two citations.
# Weights trained on it take CC-BY-NC-4.0, the SPDX licence bioimage.io accepts that says exactly that
# (attribution, non-commercial) without adding a share-alike term the data does not ask for.
ISBI2012 = TrainingData(
    "ISBI 2012 EM segmentation challenge (training volume)", None,
    "Non-commercial use only (generating or testing non-commercial image segmentation software); "
    "publications must cite TrakEM2 and Cardona et al. 2010.",
    (CARDONA_2010, TRAKEM2, ISBI_CHALLENGE), "CC-BY-NC-4.0", "ilastik/isbi2012_neuron_segmentation_challenge")

# Share-alike: weights trained on it are released under the same licence.
MONUSEG = TrainingData(
    "MoNuSeg 2018 (Multi-Organ Nucleus Segmentation)", "CC-BY-NC-SA-4.0",
    "CC BY-NC-SA 4.0: attribution, non-commercial use only, derived work (these weights) under the same "
    "licence; cite Kumar et al. 2017 and 2020.",
    (KUMAR_2017, KUMAR_2020), "CC-BY-NC-SA-4.0", "deepimagej/monuseg_digital_pathology_miccai2018")


def describe(data: TrainingData) -> dict:
    """The facts as `biounet info` shows them: one line each, citations with their DOIs."""
    return {"name": data.name, "license": data.license or "none (see terms)", "terms": data.terms,
            "weights_license": data.weights_license or "not restricted by the data",
            "cite": "; ".join(f"{c.text} doi:{c.doi}" for c in data.cite),
            "bioimageio": data.bioimageio or "none"}
