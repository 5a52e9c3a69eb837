"""The archive suite on status-go's first proof of concept: each status peer drives a separate
storage node over REST (topology `archive-poc`). The same tests as test_archive.py (embedded
storage); here the owner's own node is reachable, so the tests that need its repo run too."""

from __future__ import annotations

import pytest

from suites.functional.test_archive import (  # noqa: F401 (collected here with this module's TOPOLOGY)
    peers,
    test_a_late_joiner_gets_the_history_from_the_archive,
    test_a_member_logged_out_during_creation_gets_the_archive_after_login,
    test_an_archive_gone_from_every_provider_is_skipped_and_the_rest_imports,
    test_each_round_adds_an_archive_and_replaces_the_index,
    test_missing_or_corrupt_index_fails_visibly_and_imports_nothing,
    test_no_messages_means_no_archive_and_no_link,
    test_owner_publishes_an_archive_the_member_downloads_and_decodes,
    test_stale_repeated_forged_and_own_links_are_ignored,
)

pytestmark = [pytest.mark.archive]
TOPOLOGY = "archive-poc"
