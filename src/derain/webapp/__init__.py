"""`derain-demo`: a local web page that derains uploaded photos (Gradio; `pip install derain[demo]`).

`uploads` checks and derains one uploaded file (no Gradio needed), `examples` renders the page's
rainy example photos, `model` chooses the checkpoint, and `page` builds and serves the page.
"""
