"""report.html: the markdown report as one page that opens anywhere, without the folder or a server.

markdown-it renders it (CommonMark and tables) with raw HTML off, so markup in the database's text
is shown, never run. Figures arrive as data URIs and the style is inline; the page's content
security policy blocks anything else, so it references nothing outside itself.
"""

from html import escape

from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { margin: 0; background: #f6f7f9; color: #1f2328;
  font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: #fff;
  box-shadow: 0 0 0 1px #e3e6ea; }
h1 { font-size: 1.7em; border-bottom: 2px solid #e3e6ea; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #e3e6ea; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; display: block; overflow-x: auto;
  font-size: .92em; }
th, td { border: 1px solid #d0d7de; padding: 5px 10px; text-align: left; vertical-align: top; }
th { background: #eef1f4; }
tbody tr:nth-child(even) { background: #f8f9fb; }
code { font: .9em/1.4 ui-monospace, Menlo, Consolas, monospace; background: #eef1f4;
  padding: .1em .3em; border-radius: 4px; }
pre { background: #f3f5f7; border: 1px solid #e3e6ea; border-radius: 6px; padding: 12px;
  overflow-x: auto; }
pre code { background: none; padding: 0; }
blockquote { margin: 1em 0; padding: .5em 1em; border-left: 4px solid #d4a72c;
  background: #fff8e5; }
img { display: block; max-width: 100%; height: auto; margin: 1em 0; border: 1px solid #e3e6ea; }
"""


def render_html(markdown: str, title: str) -> str:
    """A standalone page showing `markdown`, whose images must be data URIs to show."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"{_MARKDOWN.render(markdown)}</main>\n</body>\n</html>\n"
    )
