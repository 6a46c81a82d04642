"""Unsupervised domain adaptation: extra losses that align a source and a target domain.

Use any registered method through one call per step::

    adapter = create_adapter("dann", feature_dim=64, n_classes=10)
    f_s, f_t = backbone(x_s), backbone(x_t)
    logits_s, logits_t = head(f_s), head(f_t)
    loss = F.cross_entropy(logits_s, y_s) + adapter.loss(f_s, f_t, logits_s, logits_t, progress, y_s=y_s)

The contract is in :mod:`~polytask.methods.adaptation.base`, the shared losses in
:mod:`~polytask.methods.adaptation.losses`; every other module is one method and registers
it on import.
"""

from polytask.core.registry import import_modules
from polytask.methods.adaptation.base import ADAPTERS, Adapter, adapter_names, create_adapter, register_adapter
from polytask.methods.adaptation.losses import (
    GradientReversal,
    classifier_discrepancy,
    coral_distance,
    entropy_weights,
    gaussian_mk_mmd,
    grad_reverse,
    grl_coefficient,
    mcc_loss,
    prediction_entropy,
)

# Registration order is the order method names are listed everywhere (adapter_names, error
# messages, studies): the shipped methods in this order, then any other module, sorted.
import_modules(__name__, __path__, first=("dann", "dan", "deep_coral", "cdan", "mcc", "adabn", "mcd", "mdd"))

# The method classes stay importable from the package; imported only after the loop above
# so that it alone decides the registration order.
from polytask.methods.adaptation.adabn import AdaBN, adabn_recalibrate  # noqa: E402
from polytask.methods.adaptation.cdan import CDAN  # noqa: E402
from polytask.methods.adaptation.dan import DAN  # noqa: E402
from polytask.methods.adaptation.dann import DANN  # noqa: E402
from polytask.methods.adaptation.deep_coral import DeepCORAL  # noqa: E402
from polytask.methods.adaptation.mcc import MCC  # noqa: E402
from polytask.methods.adaptation.mcd import MCD  # noqa: E402
from polytask.methods.adaptation.mdd import MDD, modified_log_loss  # noqa: E402

__all__ = [
    "ADAPTERS",
    "CDAN",
    "DAN",
    "DANN",
    "MCC",
    "MCD",
    "MDD",
    "AdaBN",
    "Adapter",
    "DeepCORAL",
    "GradientReversal",
    "adabn_recalibrate",
    "adapter_names",
    "classifier_discrepancy",
    "coral_distance",
    "create_adapter",
    "entropy_weights",
    "gaussian_mk_mmd",
    "grad_reverse",
    "grl_coefficient",
    "mcc_loss",
    "modified_log_loss",
    "prediction_entropy",
    "register_adapter",
]
