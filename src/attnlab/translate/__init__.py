"""Translation from a trained run folder, and the ``attnlab translate`` command.

:func:`load_run` rebuilds a ``translate`` run's model and vocabularies from its folder (JSON + safetensors,
no pickle); :class:`RunTranslator` translates sentences and traces their attention.
"""

from attnlab.translate.run import RunTranslator, load_run

__all__ = ["RunTranslator", "load_run"]
