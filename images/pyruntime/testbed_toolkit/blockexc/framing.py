"""BlockExchange framing: unsigned-varint length-prefixed messages on a libp2p stream (Kad-DHT's
framing too, with its own size limit)."""

from __future__ import annotations

from libp2p.abc import INetStream

from testbed_toolkit.blockexc.messages import MAX_MESSAGE_BYTES
from testbed_toolkit.protobuf import DecodeError, decode_varint


class FrameReader:
    """Reads unsigned-varint length-prefixed frames from a libp2p stream.

    A frame's chunks are joined once; the body is a view into that join (no further copies of
    the blocks it carries)."""

    def __init__(self, stream: INetStream, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.stream = stream
        self.max_bytes = max_bytes
        self.buffer = b""

    async def _fill(self, size: int) -> bool:
        """Make the buffer at least `size` bytes long; False at end of stream."""
        chunks, have = [self.buffer], len(self.buffer)
        while have < size:
            chunk = await self.stream.read(max(size - have, 1 << 16))
            if not chunk:
                return False
            chunks.append(chunk)
            have += len(chunk)
        if len(chunks) > 1:
            self.buffer = b"".join(chunks)
        return True

    async def read(self) -> memoryview | None:
        """The next frame's body, or None at end of stream."""
        while True:
            try:
                length, start = decode_varint(self.buffer)
                break
            except DecodeError:
                if len(self.buffer) >= 10:
                    raise
                if not await self._fill(len(self.buffer) + 1):
                    return None
        if length > self.max_bytes:
            raise DecodeError(f"frame of {length} bytes exceeds {self.max_bytes}")
        if not await self._fill(start + length):
            return None
        body = memoryview(self.buffer)[start : start + length]
        self.buffer = self.buffer[start + length :]
        return body
