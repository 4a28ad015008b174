"""Results: the versioned results files (:mod:`.files`), and everything that reads them: the
summary table, ``brokerbench compare``, the report with its plots, the seed's claims."""
