"""The one error hierarchy. Each front-end maps it to its own status codes in one place."""


class GatewayError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__doc__ or type(self).__name__)

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(GatewayError):
    """Invalid input data."""


class MalformedPayload(InvalidInput):
    """The payload is not valid JSON or breaks the telemetry/attribute grammar."""


class PayloadTooLarge(InvalidInput):
    """The payload is larger than the configured limit."""


class Unauthorized(GatewayError):
    """Unknown or invalid credentials."""


class Forbidden(GatewayError):
    """The caller may not do this."""


class NotFound(GatewayError):
    """The resource does not exist."""


class Conflict(GatewayError):
    """The resource conflicts with an existing one."""


class NameTaken(Conflict):
    """A device with this name already exists in the project."""


class CredentialsTaken(Conflict):
    """Specified credentials are already registered!"""


class NodeIdTaken(Conflict):
    """A device with this node id already exists in the product."""


class CredentialsInvalid(InvalidInput):
    """The credentials are not valid."""


class QuotaExceeded(GatewayError):
    """A configured limit was reached."""


class Overloaded(GatewayError):
    """The ingest queue is full; retry later."""

    def __init__(self, message: str = "", retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyRequests(GatewayError):
    """Too many requests from this source; retry later."""

    def __init__(self, message: str = "", retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyConnections(TooManyRequests):
    """Too many connections from this address at once."""


class ConnectionRateExceeded(TooManyRequests):
    """New connections from this address come too fast."""


class SourceBlocked(TooManyRequests):
    """Too many authentication failures from this address; it is refused for a while."""


class ProvisionRateExceeded(TooManyRequests):
    """Too many provisioning attempts with this provision key; retry later."""


class Unavailable(GatewayError):
    """A dependency (the database) is unavailable, or the gateway is shutting down."""


class ShuttingDown(Unavailable):
    """The gateway is stopping: it takes no new work."""


class ProjectNameTaken(Conflict):
    """A project with this name already exists."""


class ProductNameTaken(Conflict):
    """A product with this name already exists in the project."""


class ProvisionKeyTaken(Conflict):
    """Device profile with such provision device key already exists!"""


class ProductInUse(Conflict):
    """The product still has devices; delete them first."""


class LimitOutOfRange(InvalidInput):
    """The limit parameter is out of range."""


class OffsetOutOfRange(InvalidInput):
    """The offset parameter is out of range."""


class InvalidTime(InvalidInput):
    """A time parameter is not Unix milliseconds."""


class InvalidTimeRange(InvalidInput):
    """The start time is after the end time."""


class DeviceNotConnected(Conflict):
    """The device is not connected."""


class RpcTimeout(GatewayError):
    """The device did not answer the call in time."""


class TemplateQuotaExceeded(QuotaExceeded):
    """The project already has the most provisioning templates allowed."""


class TemplateNameTaken(Conflict):
    """A provisioning template with this name already exists in the project."""


class TemplateInUse(Conflict):
    """The provisioning template is bound to a device CA certificate; unbind it first."""


class CaQuotaExceeded(QuotaExceeded):
    """The project already has the most device CA certificates allowed."""


class CaTaken(Conflict):
    """This CA certificate is already registered."""


class CaNotVerified(InvalidInput):
    """The CA certificate is not verified: prove possession of its key first."""


class VerificationFailed(InvalidInput):
    """The verification certificate is not signed by the CA or its CN is not the verify code."""


class InvalidProvisionRequest(MalformedPayload):
    """The provisioning request lacks a field ThingsBoard requires, or names an unknown credentials type."""


class CertificateRefused(Unauthorized):
    """The client certificate names no device and registers none."""


class UnknownAddress(NotFound):
    """No topic or resource at this address."""


class MethodNotAllowed(GatewayError):
    """The resource does not accept this method."""

    def __init__(self, message: str = "", allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed


class ClaimingNotAllowed(Forbidden):
    """The device's product does not allow claiming."""


class ClaimSecretMismatch(Forbidden):
    """The secret key does not match the device's claim."""


class ClaimExpired(NotFound):
    """The device has no claim in progress, or its claim expired: the device must ask to be claimed again."""


class DeviceAlreadyClaimed(Conflict):
    """The device is already claimed; release it first."""
