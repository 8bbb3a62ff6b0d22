"""MkDocs hook: the site's front page is the repository's README, read in place of docs/index.md; its links are
written from the repository's root (`docs/experiments.md`), and on the site they are relative to docs/."""
import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"
ROOT_LINK = re.compile(r"\]\(docs/")


def on_page_read_source(page, config):
    if page.file.src_uri == "index.md":
        return ROOT_LINK.sub("](", README.read_text())
    return None
