"""The first-stage keyword classifier and term extraction."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from models.keyword import KeywordClassifier, rule_stance
from models.text import domains, terms, tokens
from seismo.contracts import Post
from seismo.watchlist import Dossier, Watchlist, load_watchlist
from streams.detector import tracked_keys


def post(text: str) -> Post:
    return Post(id="1", source="bluesky", text=text, created_at=datetime(2026, 5, 1, tzinfo=UTC))


def test_tokens_drop_urls_and_mentions() -> None:
    assert tokens("RT @bob Huge #Tornado near Moore http://t.co/x") == [
        "rt",
        "huge",
        "#tornado",
        "near",
        "moore",
    ]


def test_terms_fold_hashtags_skip_stopwords_and_keep_domains() -> None:
    t = terms("The #tornado hit Moore's school https://www.news9.com/story and the tornado")
    assert t[:3] == ["tornado", "hit", "moore"]
    assert "the" not in t and t.count("tornado") == 1
    assert "domain:news9.com" in t
    assert domains("see https://t.co/abc") == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["http", "https", "HTTP", "hTTps"])
        .flatmap(
            lambda scheme: st.tuples(
                st.just(scheme),
                st.sampled_from(["t.co", "T.CO", "t.co.x.io", "t.co:80", "www.t.co", "ab.c"]),
                st.sampled_from(["", "/", "/x1", ")", "/a?b=c.", ":8/p"]),
            )
        )
        .map(lambda p: f"{p[0]}://{p[1]}{p[2]}"),
        max_size=4,
    ),
    st.sampled_from([" ", " and ", "\n"]),
)
def test_domains_skip_t_co_links_as_a_url_parser_would(links: list[str], sep: str) -> None:
    """A link to host t.co is skipped before parsing (most tweets' only link): the same
    hosts as parsing every link."""
    text = sep.join(["see", *links])
    want: list[str] = []
    for m in re.findall(r"https?://\S+", text, re.IGNORECASE):
        host = (urlsplit(m.rstrip(").,;!?\"'")).hostname or "").lower().removeprefix("www.")
        if host and host != "t.co" and host not in want:
            want.append(host)
    assert domains(text) == want


def test_claim_and_dossier_matching() -> None:
    clf = KeywordClassifier(load_watchlist())
    cp = clf.classify(post("Zhipu says GLM-5 was trained entirely on Huawei #Ascend chips"))
    assert "china-ai-rising" in cp.dossiers
    assert [c.claim for c in cp.claims] == ["glm5-trained-on-ascend"]
    off = clf.classify(post("Lovely sunset at the beach today"))
    assert off.dossiers == [] and off.claims == []


def test_a_possessive_matches_its_word_whatever_the_apostrophe() -> None:
    clf = KeywordClassifier(load_watchlist())
    for apostrophe in ("'", "\u2019"):
        cp = clf.classify(post(f"Jack Ma retires as Alibaba{apostrophe}s chairman"))
        assert cp.dossiers == ["ai-capital-surge"]
    assert tokens("It isn\u2019t over") == ["it", "isn't", "over"]  # one token, as typed with '


def test_keywords_in_any_script_match_as_typed() -> None:
    """A keyword in Japanese is found inside a clause ("地震" in "東京で地震があった"), one
    with accents as a whole word ("São Paulo", not "paulo" alone)."""
    wl = Watchlist(
        dossiers=[
            Dossier(id="quake", title="Quake", keywords=["地震"]),
            Dossier(id="sao-paulo", title="São Paulo", keywords=["São Paulo"]),
        ]
    )
    clf = KeywordClassifier(wl)
    assert clf.classify(post("東京で地震があった。怖い")).dossiers == ["quake"]
    assert clf.classify(post("#地震 また揺れた")).dossiers == ["quake"]
    assert clf.classify(post("東京で震度4")).dossiers == []
    assert clf.classify(post("Chuva forte em São Paulo hoje")).dossiers == ["sao-paulo"]
    assert clf.classify(post("Paulo went home")).dossiers == []


def test_rule_stance() -> None:
    assert rule_stance("This GLM-5 Ascend story is fake") == "deny"
    assert rule_stance("Was GLM-5 really trained on Ascend?") == "query"
    assert rule_stance("Zhipu confirmed GLM-5 ran on Ascend") == "support"
    assert rule_stance("GLM-5 and Ascend, interesting") == "comment"


def test_burst_keys_cover_terms_dossiers_claims_and_stance() -> None:
    clf = KeywordClassifier(load_watchlist())
    cp = clf.classify(post("Is it true GLM-5 was trained on Huawei Ascend?"))
    assert "glm-5" in cp.terms
    keys = {key for key, *_ in tracked_keys(cp)}
    assert "dossier:china-ai-rising" in keys
    assert "claim:glm5-trained-on-ascend" in keys
    assert "claim:glm5-trained-on-ascend:stance:query" in keys
