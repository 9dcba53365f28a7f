"""Run at the start of a Python process that has this folder on ``PYTHONPATH`` (``site`` imports
the first ``sitecustomize`` it finds): points b2sdk's ``production`` realm at a B2 double.

``B2ResultStore`` authorises against the ``production`` realm, whose address b2sdk keeps in
``REALM_URLS``; a worker process started by a test gets ``FASTWAN_TESTING_B2_REALM_URL`` (the
double's URL) and this folder on its path (``B2Double.process_env``), so that its production
code talks to the double. Without the variable this does nothing, not even import b2sdk.
"""

import os

_url = os.environ.get("FASTWAN_TESTING_B2_REALM_URL")
if _url:
    from b2sdk.v2 import REALM_URLS

    REALM_URLS["production"] = _url
