"""Fine-tuning regularizers: extra losses that keep a fine-tuned model near its start.

Build one with ``create_regularizer(name, start, **hparams)``; the protocol (``attach``,
the per-step call, ``trainable_parameters``) is described in
:mod:`polytask.methods.finetuning.regularizers.base`. One module per regularizer
(``l2-sp``, ``delta``, ``bss``, ``lwf``) registers it on import.
"""

from polytask.core.registry import import_modules
from polytask.methods.finetuning.regularizers.base import REGULARIZERS, Penalty, create_regularizer, register_regularizer, regularizer_names

# Each module registers its regularizer on import; the shipped ones are listed in this
# order, any other module after them.
import_modules(__name__, __path__, first=("l2_sp", "delta", "bss", "lwf"))

# The classes, imported only after the loop above so that it alone sets the registration order.
from polytask.methods.finetuning.regularizers.bss import BSS  # noqa: E402
from polytask.methods.finetuning.regularizers.delta import DELTA  # noqa: E402
from polytask.methods.finetuning.regularizers.l2_sp import L2SP  # noqa: E402
from polytask.methods.finetuning.regularizers.lwf import LwF  # noqa: E402

__all__ = ["BSS", "DELTA", "L2SP", "LwF", "Penalty", "REGULARIZERS", "create_regularizer", "register_regularizer", "regularizer_names"]
