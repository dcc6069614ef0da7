"""The admission gate of the ASGI adapter: :mod:`concmon.gate`, shared with the Django adapter.

Kept as a module here so ``concmon_fastapi.gate`` goes on naming what it always named.
"""

from concmon.gate import GATE_QUEUE, AdmissionGate, ClientWatch, Verdict

__all__ = ["GATE_QUEUE", "AdmissionGate", "ClientWatch", "Verdict"]
