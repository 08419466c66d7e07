"""Serial link to microcontroller robots: the framed protocol and a reconnecting transport."""

from rlfm_edge.serial.protocol import (
    PROTOCOL_VERSION,
    Action,
    Error,
    FrameDecoder,
    Heartbeat,
    Message,
    Observation,
    encode_frame,
)

__all__ = ["PROTOCOL_VERSION", "Action", "Error", "FrameDecoder", "Heartbeat", "Message",
           "Observation", "SerialLink", "encode_frame"]


def __getattr__(name: str):
    # the transport needs pyserial (the `serial` extra); the protocol does not
    if name == "SerialLink":
        from rlfm_edge.serial.link import SerialLink
        return SerialLink
    raise AttributeError(name)
