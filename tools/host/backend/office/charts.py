"""Charts as pictures without a script: bar charts drawn as SVG on the server, every label
escaped, amounts as the receipt prints them."""

from html import escape

from tools.host.backend.reports import money

WIDTH = 640
HEIGHT = 220
_TOP = 20
_BOTTOM = 40
_LEFT = 10


def bar_chart(title, labels, values, currency):
    """An SVG bar chart of integer minor-unit values (negative bars hang below zero)."""
    count = max(1, len(values))
    high = max([0] + list(values))
    low = min([0] + list(values))
    span = (high - low) or 1
    plot = HEIGHT - _TOP - _BOTTOM
    zero_y = _TOP + plot * high / span
    step = (WIDTH - 2 * _LEFT) / count
    bar = max(1.0, step * 0.7)
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" '
        'role="img" aria-label="%s">' % (WIDTH, HEIGHT, escape(title)),
        "<title>%s</title>" % escape(title),
        '<rect width="%d" height="%d" fill="#fff"/>' % (WIDTH, HEIGHT),
        '<text x="%d" y="14" font-size="13" font-family="sans-serif">%s (highest %s)</text>'
        % (_LEFT, escape(title), escape(money(high, currency))),
        '<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#888"/>'
        % (_LEFT, WIDTH - _LEFT, zero_y, zero_y),
    ]
    every = max(1, count // 12)  # at most about a dozen labels under the bars
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = _LEFT + index * step + (step - bar) / 2
        size = plot * abs(value) / span
        y = zero_y - size if value >= 0 else zero_y
        parts.append(
            '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
            "<title>%s: %s</title></rect>"
            % (
                x,
                y,
                bar,
                size,
                "#2b6cb0" if value >= 0 else "#c53030",
                escape(str(label)),
                escape(money(value, currency)),
            )
        )
        if index % every == 0:
            parts.append(
                '<text x="%.1f" y="%d" font-size="10" font-family="sans-serif" '
                'text-anchor="middle">%s</text>'
                % (x + bar / 2, HEIGHT - _BOTTOM + 14, escape(str(label)))
            )
    parts.append("</svg>")
    return "".join(parts)
