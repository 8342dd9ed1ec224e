"""Campaign HTML templates of the kinds people send, for render tests and `bench.render`."""

from __future__ import annotations

from typing import Final

# The benchmarks' campaign (bench/campaign.py): no CSS, one variable.
PLAIN: Final = """<html><body>
<p>Hello {{ name }},</p>
<p>Our autumn news: a short paragraph of the kind a newsletter carries, long enough to look like
mail and short enough to keep the benchmark about the dispatcher, not about rendering.</p>
<p><a href="https://example.com/news">Read more</a></p>
</body></html>
"""

_CSS: Final = """
body { margin: 0; padding: 0; background-color: #f4f4f4; font-family: Arial, sans-serif; }
table { border-collapse: collapse; }
td { font-family: Arial, Helvetica, sans-serif; color: #333333; }
.wrapper { width: 100%; background-color: #f4f4f4; }
.container { width: 600px; margin: 0 auto; background-color: #ffffff; }
.header { padding: 20px; background-color: #003366; color: #ffffff; text-align: center; }
.header h1 { font-size: 24px; margin: 0; color: #ffffff; }
.content { padding: 20px 30px; font-size: 15px; line-height: 22px; }
.content h2 { font-size: 20px; color: #003366; margin: 0 0 10px 0; }
.content p { margin: 0 0 12px 0; }
.button a { background-color: #ff6600; color: #ffffff; padding: 10px 20px; border-radius: 4px; }
.footer { padding: 20px; font-size: 12px; color: #888888; text-align: center; }
.footer a { color: #888888; text-decoration: underline; }
.product td { padding: 10px; border-bottom: 1px solid #eeeeee; }
.price { font-weight: bold; color: #cc0000; }
a:hover { color: #ff0000; }
@media only screen and (max-width: 620px) {
  .container { width: 100% !important; } .content { padding: 10px !important; }
}
"""


def newsletter(products: int = 12) -> str:
    """A responsive newsletter: <style> rules, layout tables, an {% if %}, a product list."""
    rows = "\n".join(
        f'<tr class="product"><td><img src="https://cdn.example.com/p{i}.png" alt="Product {i}" '
        f'width="80"></td><td><h2>Product {i}</h2><p>Number {i}, picked for {{{{ first_name }}}}'
        f': durable, light and cheap.</p><p class="price">{i}9.99 EUR</p><p class="button">'
        f'<a href="https://shop.example.com/p/{i}?u={{{{ email|urlencode }}}}">Buy now</a></p>'
        "</td></tr>"
        for i in range(products)
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>News for {{{{ first_name }}}}</title>
<style>{_CSS}</style></head>
<body><table class="wrapper" role="presentation"><tr><td>
<!--[if mso]><table width="600"><tr><td>{{{{ first_name }}}}<![endif]-->
<table class="container" role="presentation">
<tr><td class="header"><h1>Hello {{{{ first_name }}}}!</h1></td></tr>
<tr><td class="content"><h2>Our autumn selection</h2>
<p>Dear {{{{ first_name }}}} {{{{ last_name }}}}, picked for you in {{{{ city }}}}.</p>
{{% if tier == "gold" %}}<p class="gold">As a gold member you get 10 % off everything.</p>
{{% elif tier %}}<p>Member since {{{{ city }}}}.</p>{{% else %}}<p>Join us!</p>{{% endif %}}
{{# the list #}}
<table role="presentation"><tbody>{{% for c in last_name %}}<tr><td>{{{{ c }}}}</td></tr>
{{% endfor %}}{rows}</tbody></table></td></tr>
<tr><td class="footer"><p>You receive this because you subscribed.
<a href="{{{{ unsubscribe_url }}}}" title="Leave, {{{{ email }}}}">Unsubscribe</a></p></td></tr>
</table></td></tr></table></body></html>
"""


# test_campaign_render's template: a <style> rule and the unsubscribe link.
SMALL: Final = """<html><head><style>p { color: red }</style></head><body>
<h1>Hello {{ first_name }}</h1>
<p>Your code is {{ code }}.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>"""

# Filters whose output is Markup when autoescaping (|replace, |join), and |safe.
FILTERS: Final = """<html><head><style>p { color: red } b { font-weight: bold }</style></head>
<body><p>Hello {{ first_name|replace("o", "0") }} from {{ [city, tier]|join(" & ") }}!</p>
<p title="{{ last_name|replace("a", '"') }}">{{ code|safe }} <b>{{ name|upper }}</b></p>
</body></html>"""

# Typical templates that render once (CSS inlined once per campaign).
TYPICAL: Final = {"plain": PLAIN, "small": SMALL, "newsletter": newsletter(3), "filters": FILTERS}
