"""Community History Archives over Logos Storage: the control node's loop and the member's download/import.

Follows status-go's archive manager for Logos Storage (status-im/status-go
`protocol/communities/archive/logosstorage/archive_manager_logos_storage.go`; docs/status-ref.md,
"What the peer implements", Archive protocol):
windows of one interval, empty windows skipped, chunks of at most `max_archive_bytes`, one
WakuMessageArchive per chunk uploaded to the peer's storage node, an index keyed by Keccak-256
archive IDs uploaded after them; its CID is the archive link. Members fetch the index from the
network with a timeout (retried once), then every missing archive newest first (trigger +
`exists` polling), record it unimported, and import one archive per tick after the initial delay.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from statusref.protobufs import ArchiveIndex, ArchiveMetadata, IndexEntry, WakuMessage, WakuMessageArchive
from statusref.storage import StorageError, StorageTimeout

if TYPE_CHECKING:
    from statusref.messenger import Messenger

log = logging.getLogger("archive")
IMPORT_TICK_S = 0.1
IMPORT_CHUNK = 10  # messages handed to the pipeline at a time, as status-go


@dataclass
class ArchiveSettings:
    interval_s: float = 7 * 24 * 3600
    import_initial_delay_s: float = 300
    download_timeout_s: float = 20
    polling_interval_s: float = 1
    polling_timeout_s: float = 30
    max_archive_bytes: int = 30_000_000
    import_rate_per_s: float = 1  # chunks of 10 messages per second (importSlowRate)


def windows(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """[start, end) cut into `size`-second windows (the last may be shorter)."""
    out, cursor = [], start
    while cursor < end:
        out.append((cursor, min(cursor + size, end)))
        cursor += size
    return out


def chunks(messages: list[WakuMessage], limit: int) -> list[list[WakuMessage]]:
    """Cut so that each chunk's sum of len(payload)+len(sig) stays <= limit; a larger message is dropped."""
    out: list[list[WakuMessage]] = [[]]
    size = 0
    for message in messages:
        weight = len(message.payload) + len(message.sig)
        if weight > limit:
            log.warning("dropping a message of %d bytes: over the archive limit %d", weight, limit)
            continue
        if size + weight > limit and out[-1]:
            out.append([])
            size = 0
        out[-1].append(message)
        size += weight
    return [chunk for chunk in out if chunk]


class OwnerArchiver:
    """The control node's side for one community."""

    def __init__(self, messenger: Messenger, community_id: str) -> None:
        self.messenger = messenger
        self.community_id = community_id

    @property
    def event(self) -> dict:
        return {"communityId": self.community_id}

    async def loop(self) -> None:
        """status-go's start rule: a last archive younger than the interval waits out the rest of it."""
        settings = self.messenger.archive_settings
        last_end = self.messenger.store.archive_info(self.community_id)["last_message_archive_end_date"]
        if last_end and time.time() - last_end < settings.interval_s:
            await trio.sleep(settings.interval_s - (time.time() - last_end))
        while True:
            await self.create_and_seed()
            await trio.sleep(self.messenger.archive_settings.interval_s)

    async def create_and_seed(self) -> None:
        store, storage, emit = self.messenger.store, self.messenger.storage, self.messenger.emit
        settings = self.messenger.archive_settings
        emit("community.creatingHistoryArchives", self.event)
        info = store.archive_info(self.community_id)
        start = info["last_message_archive_end_date"] or store.oldest_waku_message_s(self.community_id)
        end = int(time.time())
        index = await self._previous_index(info["last_archive_link"])
        topics = tuple(t.encode() for t in self.messenger.community_topics(self.community_id))
        created: list[IndexEntry] = []
        for window_start, window_end in windows(start or end, end, max(1, int(settings.interval_s))):
            raw = store.waku_messages(self.community_id, window_start, window_end)
            for chunk in chunks([WakuMessage.decode(r) for r in raw], settings.max_archive_bytes):
                archive = WakuMessageArchive(ArchiveMetadata(window_start, window_end, topics), tuple(chunk))
                cid = await storage.upload(archive.encode(), "archive-data.bin")
                entry = IndexEntry(archive.metadata, cid)
                index.add(entry)
                created.append(entry)
        store.update_archive_info(self.community_id, last_message_archive_end_date=end)
        if not created:
            emit("community.noHistoryArchivesCreated", self.event)
            return
        index_cid = await storage.upload(index.encode(), "archive-index.bin")
        previous = info["last_archive_link"]
        clock = int(time.time() * 1000)
        store.update_archive_info(self.community_id, last_archive_link=index_cid, archive_link_clock=clock)
        if previous and previous != index_cid:
            await storage.remove(previous)  # unseed the superseded index
        log.info(
            "%s: %d archives created, index %s (%d entries)",
            self.community_id,
            len(created),
            index_cid,
            len(index.archives),
        )
        emit("community.historyArchivesCreated", {**self.event, "from": created[0].metadata.start, "to": end})
        emit("community.historyArchivesSeeding", self.event)
        await self.messenger.publish_archive_link(self.community_id, index_cid, clock)

    async def _previous_index(self, link: str) -> ArchiveIndex:
        """The last index, extended, when it is still held locally; a fresh one otherwise."""
        storage = self.messenger.storage
        if link and await storage.has_cid(link):
            try:
                return ArchiveIndex.decode(await storage.local_download(link))
            except (ValueError, KeyError, AttributeError) as exc:
                log.warning("previous index %s unreadable (%s): starting a fresh one", link, exc)
        return ArchiveIndex()


class MemberDownload:
    """One member-side download + import of an archive link; cancelled when a newer link arrives."""

    def __init__(self, messenger: Messenger, community_id: str, link: str) -> None:
        self.messenger = messenger
        self.community_id = community_id
        self.link = link
        self.cancel_scope = trio.CancelScope()

    @property
    def event(self) -> dict:
        return {"communityId": self.community_id}

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self.messenger.downloads.get(self.community_id) is self:
                del self.messenger.downloads[self.community_id]

    async def _run(self) -> None:
        with self.cancel_scope:
            try:
                index = await self._fetch_index()
            except (StorageError, ValueError, KeyError, AttributeError) as exc:
                log.error(
                    "%s: index %s download failed: %s: %s",
                    self.community_id,
                    self.link,
                    type(exc).__name__,
                    exc,
                )
                return
            self.messenger.emit(
                "community.historyArchiveIndexDownloadCompleted", {**self.event, "indexCid": self.link}
            )
            await self._fetch_archives(index)
            self.messenger.store.update_archive_info(self.community_id, last_archive_link=self.link)
            self.messenger.emit("community.historyArchivesSeeding", self.event)
            await import_archives(self.messenger, self.community_id)

    async def _fetch_index(self) -> ArchiveIndex:
        timeout = self.messenger.archive_settings.download_timeout_s
        try:
            data = await self.messenger.storage.download_network(self.link, timeout)
        except StorageTimeout:
            log.warning(
                "%s: index %s timed out after %.0f s, retrying once", self.community_id, self.link, timeout
            )
            data = await self.messenger.storage.download_network(self.link, timeout)
        return ArchiveIndex.decode(data)

    async def _fetch_archives(self, index: ArchiveIndex) -> None:
        store = self.messenger.store
        known = set(store.archive_ids(self.community_id))
        if len(known) == len(index.archives):
            log.info("%s: no new archives in %s", self.community_id, self.link)
            return
        self.messenger.emit("community.downloadingHistoryArchivesStarted", self.event)
        async with trio.open_nursery() as nursery:
            for archive_id, entry in index.newest_first():
                if archive_id not in known:
                    nursery.start_soon(self._fetch_archive, archive_id, entry)

    async def _fetch_archive(self, archive_id: str, entry: IndexEntry) -> None:
        settings, storage = self.messenger.archive_settings, self.messenger.storage
        try:
            manifest = await storage.trigger_download(entry.cid, timeout=30)
            if manifest.get("cid") != entry.cid:
                raise StorageError(f"manifest CID {manifest.get('cid')} does not match {entry.cid}")
            with trio.fail_after(settings.polling_timeout_s):
                while not await storage.has_cid(entry.cid):
                    await trio.sleep(settings.polling_interval_s)
        except (trio.TooSlowError, StorageError) as exc:
            # As status-go: logged and not counted; the download still "completes".
            log.error(
                "%s: archive %s (%s) not downloaded: %s",
                self.community_id,
                archive_id,
                entry.cid,
                exc or "timeout",
            )
            return
        self.messenger.store.save_archive_id(
            self.community_id, archive_id, entry.cid, entry.metadata.start, entry.metadata.end
        )
        self.messenger.emit(
            "community.historyArchiveDownloaded",
            {**self.event, "from": entry.metadata.start, "to": entry.metadata.end},
        )


async def import_archives(messenger: Messenger, community_id: str) -> None:
    """Import every downloaded, unimported archive, one per tick, after the initial delay."""
    settings, store = messenger.archive_settings, messenger.store
    await trio.sleep_until(messenger.import_ready_at)
    rows = store.archives_to_import(community_id)
    for row in rows:
        try:
            archive = WakuMessageArchive.decode(await messenger.storage.local_download(row["cid"]))
        except (StorageError, ValueError) as exc:  # its blocks never came: kept unimported
            log.error("%s: archive %s not imported: %s", community_id, row["cid"], exc)
            continue
        messenger.emit("community.importingHistoryArchiveMessages", {"communityId": community_id})
        messages = list(archive.messages)
        for start in range(0, len(messages), IMPORT_CHUNK):
            for message in messages[start : start + IMPORT_CHUNK]:
                await messenger.handle_archived(community_id, message)
            await trio.sleep(1 / settings.import_rate_per_s)
        store.set_imported(row["hash"])
        await trio.sleep(IMPORT_TICK_S)
    if rows:
        messenger.emit("community.downloadingHistoryArchivesFinished", {"communityId": community_id})
