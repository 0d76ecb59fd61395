"""`geti-bulk migrate`: a Geti project (Geti 2, or Geti 3) into another Geti (Geti 3, or
Geti 2), item by item, media and annotations, exactly once and resumable.

    config.py   two sides (host, token, TLS, dialect) and the run's knobs
    plan.py     what the target can hold, decided before anything is sent; conversions
    scenes.py   a source annotation → a SourceAnnotation the upload path's Annotator posts
    conversions.py  the documented conversions (`--convert NAME`)
    body.py     the download streamed into the upload with its Content-Length
    sides.py    a session and a client per side, the journal key of a source item
    mover.py    one item's move: media (reconciled), then annotation or frames
    run.py      resolve, plan, create; the producer (media:query pages), the workers
    command.py  the subcommand's options
    verify.py   the two projects compared: once each, annotations ±1 px, bytes by sha256
"""
