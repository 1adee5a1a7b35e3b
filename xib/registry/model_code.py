"""The pyfunc model as MLflow "models from code": logged as this file, not as a pickle.

MLflow executes this file when the registered model loads; importing it anywhere else has the
same one effect (declaring the model), so nothing in xib imports it.
"""

from mlflow.models import set_model

from xib.registry.pyfunc import XibPyfunc

set_model(XibPyfunc())
