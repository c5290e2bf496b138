"""The simulator's own error base: what ``bench`` and ``simulate`` report and exit 1 on.

The simulator stands outside the gateway (it reaches it over the wire only), so its
errors are not the core's, and the command line reports them itself.
"""


class SimulatorError(Exception):
    """Base of every error the simulator raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])
