"""The first-stage keyword classifier and term extraction."""

from __future__ import annotations

from datetime import UTC, datetime

from models.keyword import KeywordClassifier, rule_stance
from models.text import domains, terms, tokens
from seismo.contracts import Post
from seismo.watchlist import load_watchlist
from streams.pipeline import signals_for


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


def test_claim_and_dossier_matching() -> None:
    clf = KeywordClassifier(load_watchlist())
    cp = clf.classify(post("Zhipu says GLM-5 was trained entirely on Huawei #Ascend chips"))
    assert "china-ai-rising" in cp.dossiers
    assert [c.claim for c in cp.claims] == ["glm5-trained-on-ascend"]
    off = clf.classify(post("Lovely sunset at the beach today"))
    assert off.dossiers == [] and off.claims == []


def test_rule_stance() -> None:
    assert rule_stance("This GLM-5 Ascend story is fake") == "deny"
    assert rule_stance("Was GLM-5 really trained on Ascend?") == "query"
    assert rule_stance("Zhipu confirmed GLM-5 ran on Ascend") == "support"
    assert rule_stance("GLM-5 and Ascend, interesting") == "comment"


def test_signals_cover_terms_dossiers_claims_and_stance() -> None:
    clf = KeywordClassifier(load_watchlist())
    sigs = signals_for(clf.classify(post("Is it true GLM-5 was trained on Huawei Ascend?")))
    keys = {s.key for s in sigs}
    assert "term:glm-5" in keys
    assert "dossier:china-ai-rising" in keys
    assert "claim:glm5-trained-on-ascend" in keys
    assert "claim:glm5-trained-on-ascend:stance:query" in keys
    assert all(s.post_id == "bluesky:1" for s in sigs)
