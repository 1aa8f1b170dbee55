"""The one exception hierarchy of modelminder.

Every error a user can cause derives from :class:`MinderError`. They are translated only at
the edges: the CLI prints the message and exits with code 2; the HTTP API answers with a JSON
error envelope and a status (422 invalid input, 409 a refused state change, 503 not ready).
Inside the library they propagate unchanged.
"""

from __future__ import annotations


class MinderError(Exception):
    """Base class of every error modelminder raises on purpose."""


class ConfigError(MinderError):
    """The project configuration is invalid. Fix the named key in ``minder.toml``."""


class FeatureDefinitionError(MinderError):
    """A feature set is defined wrongly. Fix the named feature in your features module."""


class SchemaError(MinderError):
    """Input data does not match the topic's schema. Nothing was written; fix the named row."""


class LogError(MinderError):
    """The event log cannot do what was asked (missing file, bad range). Read the message."""


class InputFileError(MinderError):
    """An input file cannot be read. Check its path and format."""


class ArtifactError(MinderError):
    """A model artifact is invalid, or on disk it no longer matches its checksum.

    A mismatch means the artifact was tampered with or corrupted: do not use it. Restore the
    folder from a backup, or retrain and register a new version.
    """


class RegistryError(MinderError):
    """The model registry refused a request (unknown version or alias, a rejected model as
    champion without an override, nothing to roll back to). Read the message for the fix."""


class TrainingError(MinderError):
    """Training cannot proceed (no labels yet, one class, an empty range, a bad option).
    Read the message: it names the input to change."""


class MonitorError(MinderError):
    """A monitor cannot compute what was asked (an empty window, a feature the reference lacks,
    a reference that does not match its data). Read the message: it names the input to fix."""
