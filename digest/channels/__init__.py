"""Second ways to the planned papers (DESIGN.md section 13): team-chat webhooks and the Atom feed.

- ``formats``: a channel's papers as Slack Block Kit messages or one plain JSON document (pure).
- ``webhook``: one HTTP POST and what its answer means (posted, retry later, refused); the URL is a secret.
- ``post``: once per channel and day, with the outbox discipline of mail (plan, claim, post, settle).
- ``feed``: a subscriber's matched papers as Atom (feedgen; pure).
"""
