import pytest

from fusion.models import available, build_model
from fusion.report import architectures


@pytest.fixture(scope="module")
def table():
    return architectures.architecture_table()


def test_every_registered_model_has_one_row_and_facts(table):
    assert sorted(table["architecture"]) == available()
    assert set(architectures.FACTS) == set(available())


def test_parameter_counts_are_computed(table):
    for size in architectures.SIZES:
        assert (table[f"{size} parameters"] > 0).all()
    row = table.set_index("architecture").loc["alignn"]
    for size in architectures.SIZES:
        model = build_model("alignn", size=size)
        assert row[f"{size} parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert row["paper parameters"] > row["cpu parameters"]


def test_embedding_kinds_and_sizes(table):
    assert set(table["atom embedding"]) <= set(architectures.EMBEDDING_KINDS)
    # README.md states this split; change it there when a model's embedding changes.
    learned = set(table.loc[table["atom embedding"] == architectures.LEARNED, "architecture"])
    assert learned == {"cgcnn", "schnet", "megnet", "alignn", "dimenetpp", "matformer"}
    row = table.set_index("architecture").loc["alignn"]
    assert (row["cpu layers"], row["cpu width"]) == ("2+2", 64)
    assert (row["paper layers"], row["paper width"]) == ("4+4", 256)
    assert row["cpu embedding width"] == 32
    assert architectures.embedding_split(table)["descriptor_dim"] == 69


def test_display_tables(table):
    inputs, sizes = architectures.display_tables(table)
    assert len(inputs) == len(sizes) == len(table)
    assert list(inputs["architecture"]) == list(table["architecture"])
    cgcnn = sizes.set_index("architecture").loc["cgcnn"]
    assert cgcnn["cpu: layers × width"] == "3 × 64"
    assert cgcnn["cpu: parameters"] == f"{build_model('cgcnn').num_parameters():,}"
