"""Labels of the data: a country code, or a country and its ISO 3166-2 subdivision."""


def split_label(label: str) -> tuple[str, str | None]:
    """Split a label into its country and its subdivision, if it has one.

    ``"UA-43"`` gives ``("UA", "UA-43")`` (the subdivision code keeps its country prefix, as
    ISO 3166-2 writes it); ``"US"`` gives ``("US", None)``.
    """
    country, dash, _ = label.partition("-")
    return (country, label) if dash else (label, None)
