"""``span-deploy validate`` on polygraphy: one slide through every backend, compared with torch.

runners: polygraphy runners, one per backend, each giving the graph's outputs by their contract
         names (``rulebook.engine_outputs``): ``OnnxrtRunner`` over our ORT sessions (the plugin
         graph with the custom-op library registered, the portable graph), ``TrtRunner`` over
         ``EngineFromBytes``, and ``TorchRunner`` (the eager reference, a ``BaseRunner``)
compare: the slide's feed (the host rulebook's engine inputs), ``Comparator.run`` /
         ``Comparator.compare_accuracy`` with ``CompareFunc.simple``, the result rows and the JSON
         report, and the inputs / outputs saved in polygraphy's own formats (replayable with
         ``polygraphy run``)

polygraphy is imported here at module level; the CLI imports this package only when
``validate`` runs.
"""
