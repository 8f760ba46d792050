"""A minimal HTML results page (CUT layout): headers and rows of linked images under web_dir/images/."""
import os

from util.util import atomic_write_text, mkdirs


class HTML:
    """Builds web_dir/index.html; image paths given to add_images are relative to web_dir/images/."""

    def __init__(self, web_dir, title, refresh=0):
        self.title = title
        self.web_dir = web_dir
        self.img_dir = os.path.join(web_dir, 'images')
        mkdirs([self.web_dir, self.img_dir])
        import dominate  # here, not at import: train.py with --no_html runs without dominate
        self.doc = dominate.document(title=title)
        if refresh > 0:
            with self.doc.head:
                from dominate.tags import meta
                meta(http_equiv='refresh', content=str(refresh))

    def get_image_dir(self):
        return self.img_dir

    def add_header(self, text):
        from dominate.tags import h3
        with self.doc:
            h3(text)

    def add_images(self, ims, txts, links, width=400):
        """One table row: each image (shown `width` px wide) links to `links[i]`, captioned `txts[i]`."""
        from dominate.tags import a, br, img, p, table, td, tr
        row_table = table(border=1, style='table-layout: fixed;')
        self.doc.add(row_table)
        with row_table:
            with tr():
                for im, txt, link in zip(ims, txts, links):
                    with td(style='word-wrap: break-word;', halign='center', valign='top'):
                        with p():
                            with a(href=os.path.join('images', link)):
                                img(style=f'width:{width}px', src=os.path.join('images', im))
                            br()
                            p(txt)

    def save(self):
        """Write web_dir/index.html atomically (a reader never sees a half-written page)."""
        atomic_write_text(os.path.join(self.web_dir, 'index.html'), self.doc.render())
