"""FileTransport (dry runs, preview) and the Transport protocol both transports satisfy."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

from digest.mailer import FileTransport, SmtpPool

SENDER = "digest@example.org"
DATA = b"From: digest@example.org\r\nTo: reader@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


async def test_each_message_becomes_one_eml_file_with_the_exact_bytes(tmp_path: Path) -> None:
    async with FileTransport(tmp_path / "out") as transport:
        first = await transport.send(SENDER, "reader@example.org", DATA)
        second = await transport.send(SENDER, "reader@example.org", DATA + b"more\r\n")
    assert (first.status, first.code) == ("sent", 250)
    assert second.status == "sent"
    files = sorted((tmp_path / "out").iterdir())
    assert [p.suffix for p in files] == [".eml", ".eml"]
    assert files == sorted(transport.paths)
    assert files[0].read_bytes() == DATA
    assert files[1].read_bytes() == DATA + b"more\r\n"
    assert str(files[0]) in first.reply
    assert transport.messages_sent == 2
    assert email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)["Subject"] == "hi"


async def test_file_names_are_sanitised_and_never_collide(tmp_path: Path) -> None:
    async with FileTransport(tmp_path) as transport:
        outcomes = await asyncio.gather(
            *(transport.send(SENDER, "../../etc/pa?ss*wd@exämple.org", DATA) for _ in range(20))
        )
    assert {o.status for o in outcomes} == {"sent"}
    files = list(tmp_path.iterdir())
    assert len(files) == 20
    for path in files:
        assert path.parent == tmp_path
        assert "/" not in path.name and " " not in path.name and "?" not in path.name
        assert path.name.endswith("-.._.._etc_pa_ss_wd@ex_mple.org.eml")


async def test_the_maildir_layout_writes_into_new(tmp_path: Path) -> None:
    async with FileTransport(tmp_path / "Maildir", layout="maildir") as transport:
        await transport.send(SENDER, "reader@example.org", DATA)
    maildir = tmp_path / "Maildir"
    assert sorted(p.name for p in maildir.iterdir()) == ["cur", "new", "tmp"]
    assert list((maildir / "tmp").iterdir()) == []
    [written] = list((maildir / "new").iterdir())
    assert written.read_bytes() == DATA


async def test_a_hostile_recipient_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async with FileTransport(tmp_path) as transport:
        outcome = await transport.send(SENDER, "a@example.org\r\nBcc: x@example.org", DATA)
    assert outcome.status == "permanent"
    assert list(tmp_path.iterdir()) == []


async def test_an_unwritable_folder_gives_a_temporary_outcome(tmp_path: Path) -> None:
    async with FileTransport(tmp_path / "out") as transport:
        (tmp_path / "out").rmdir()
        (tmp_path / "out").write_text("a file where the folder was")
        outcome = await transport.send(SENDER, "reader@example.org", DATA)
    assert outcome.status == "temporary"


async def _deliver_with(transport: SmtpPool | FileTransport) -> str:
    async with transport:
        outcome = await transport.send(SENDER, "reader@example.org", DATA)
    return outcome.status


async def test_both_transports_are_interchangeable(tmp_path: Path, smtp_server: object) -> None:
    from smtp_server import FaultySmtpServer

    assert callable(smtp_server)
    server = smtp_server()
    assert isinstance(server, FaultySmtpServer)
    assert await _deliver_with(FileTransport(tmp_path)) == "sent"
    assert await _deliver_with(SmtpPool(server.settings())) == "sent"
    assert server.count == 1
    assert len(list(tmp_path.iterdir())) == 1
