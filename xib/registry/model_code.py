"""The pyfunc model as MLflow "models from code": logged as this file, not as a pickle.

MLflow executes this file when the registered model loads; nothing in xib imports it.
"""

import warnings

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from xib.registry.pyfunc import ServedModel

with warnings.catch_warnings():
    # predict() takes records of any shape ({question, media}); no type hints, so no MLflow schema.
    warnings.simplefilter("ignore", UserWarning)

    class XibPyfunc(PythonModel):
        """`predict(records) -> list[str]`: one answer per {question, media} record."""

        def load_context(self, context):  # noqa: ANN001, ANN201
            self.served = ServedModel()
            self.served.load(context.artifacts)

        def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
            return self.served.predict(model_input)


set_model(XibPyfunc())
