"""Buffer-mode worker for Vast.ai and local boxes: claims jobs from the orchestrator."""

import time
from typing import Final

#: When this process began, as early as our code runs: whatever a dead run of this worker left
#: half-written is older (``recovery.py`` removes only that, never a write in progress beside it).
STARTED_AT: Final = time.time()
