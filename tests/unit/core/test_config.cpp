// Tests of configuration loading ("extends" chains), command-line overrides and validation
// against the schema (unknown keys, wrong types, choices, least values, defaults).
#include "test_support.h"

#include <fstream>
#include <string>

#include "xformer/core/config.h"
#include "xformer/train/config_checks.h"
#include "xformer/core/error.h"
#include "xformer/core/registry.h"

namespace {

using xformer::json;
using xformer::RawConfig;
using xformer::testing::TempDir;
using xformer::testing::thrown_error;

void write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

RawConfig raw_of(json value, std::string file = "") {
  RawConfig raw;
  raw.value = std::move(value);
  raw.file = std::move(file);
  return raw;
}

}  // namespace

TEST_CASE("extends chains merge parent and child", "[core][config]") {
  TempDir dir("config_extends");
  // base.json <- presets/child.json <- presets/deep/grandchild.json; each "extends" is relative
  // to the file that contains it, not to the working directory.
  write(dir.str("base.json"),
        R"({"optim": {"lr": 0.001, "warmup_steps": 100}, "train": {"max_steps": 10, "seed": 7}})");
  write(dir.str("presets/child.json"),
        R"({"extends": "../base.json", "optim": {"lr": 0.002}, "model": {"d_model": 64}})");
  write(dir.str("presets/deep/grandchild.json"),
        R"({"extends": "../child.json", "train": {"max_steps": 20}})");

  auto child = xformer::load_config_file(dir.str("presets/child.json"));
  CHECK(child.file == dir.str("presets/child.json"));
  CHECK(child.value["optim"]["lr"] == 0.002);         // child overrides parent
  CHECK(child.value["optim"]["warmup_steps"] == 100);  // sibling keys of the parent survive
  CHECK(child.value["train"]["max_steps"] == 10);
  CHECK(child.value["model"]["d_model"] == 64);
  CHECK(!child.value.contains("extends"));  // not a config key

  auto grand = xformer::load_config_file(dir.str("presets/deep/grandchild.json"));
  CHECK(grand.value["optim"]["lr"] == 0.002);
  CHECK(grand.value["optim"]["warmup_steps"] == 100);
  CHECK(grand.value["train"]["max_steps"] == 20);
  CHECK(grand.value["train"]["seed"] == 7);
  CHECK(!grand.value.contains("extends"));
}

TEST_CASE("extends errors: cycles, missing files, invalid JSON", "[core][config]") {
  TempDir dir("config_errors");
  write(dir.str("a.json"), R"({"extends": "sub/b.json", "optim": {"lr": 1}})");
  write(dir.str("sub/b.json"), R"({"extends": "../a.json"})");
  write(dir.str("self.json"), R"({"extends": "./self.json"})");
  write(dir.str("missing_parent.json"), R"({"extends": "nowhere.json"})");
  write(dir.str("broken.json"), R"({"optim": {"lr": })");
  write(dir.str("list.json"), R"([1, 2])");

  auto cycle = thrown_error([&] { xformer::load_config_file(dir.str("a.json")); });
  CHECK(cycle.exit_code() == xformer::kExitUsage);
  CHECK(contains(cycle.what(), "cycle"));
  CHECK(contains(thrown_error([&] { xformer::load_config_file(dir.str("self.json")); }).what(), "cycle"));

  // A folder that cannot be resolved (symbolic links in a loop) is a config error too.
  std::filesystem::create_symlink(dir.str("loop2"), dir.str("loop1"));
  std::filesystem::create_symlink(dir.str("loop1"), dir.str("loop2"));
  std::ofstream(dir.str("via_loop.json")) << R"({"extends": "loop1/x.json"})";
  CHECK(thrown_error([&] { xformer::load_config_file(dir.str("via_loop.json")); }).exit_code() == 2);
  auto missing = thrown_error([&] { xformer::load_config_file(dir.str("missing_parent.json")); });
  CHECK(missing.exit_code() == 2);
  CHECK(contains(missing.what(), "nowhere.json"));
  CHECK(contains(thrown_error([&] { xformer::load_config_file(dir.str("none.json")); }).what(),
                 "none.json"));
  auto broken = thrown_error([&] { xformer::load_config_file(dir.str("broken.json")); });
  CHECK(broken.exit_code() == 2);
  CHECK(contains(broken.what(), "broken.json"));
  CHECK(contains(thrown_error([&] { xformer::load_config_file(dir.str("list.json")); }).what(),
                 "list.json"));
  // Absurd nesting (a recursive walk of it would overflow the stack), a number out of range, a
  // folder: each one config error naming the file.
  std::string deep = R"({"optim": )";
  for (int i = 0; i < 100000; ++i) deep += R"({"a": )";
  write(dir.str("deep.json"), deep + "1" + std::string(100001, '}'));
  auto nested = thrown_error([&] { xformer::load_config_file(dir.str("deep.json")); });
  CHECK(nested.exit_code() == 2);
  CHECK(contains(nested.what(), "deep.json' nests JSON deeper than 100 levels"));
  write(dir.str("huge.json"), R"({"optim": {"lr": 1e400}})");
  auto huge = thrown_error([&] { xformer::load_config_file(dir.str("huge.json")); });
  CHECK(huge.exit_code() == 2);
  CHECK(contains(huge.what(), "huge.json' is not valid JSON"));
  auto folder = thrown_error([&] { xformer::load_config_file(dir.str("sub")); });
  CHECK(folder.exit_code() == 2);
  CHECK(contains(folder.what(), "(it is a folder)"));
}

TEST_CASE("apply_override parses numbers, booleans, lists and strings", "[core][config]") {
  RawConfig raw;
  xformer::apply_override(raw, "optim.lr=5e-4");
  xformer::apply_override(raw, "train.max_steps=100");
  xformer::apply_override(raw, "task.train=foo.tsv");
  xformer::apply_override(raw, "optim.betas=[0.9,0.99]");
  // A key ending in a dot names nothing.
  CHECK(contains(thrown_error([&] { xformer::apply_override(raw, "optim.lr.=0.5"); }).what(), "empty component"));
  xformer::apply_override(raw, "task.eval_bleu=false");
  xformer::apply_override(raw, "task.spm_model=\"quoted\"");
  xformer::apply_override(raw, "task.valid=[\"a.en\",\"a.de\"]");
  xformer::apply_override(raw, "task.spm_cache=");  // empty value: the empty string

  const json& v = raw.value;
  CHECK(v["optim"]["lr"].is_number_float());
  CHECK(v["optim"]["lr"].get<double>() == Approx(5e-4));
  CHECK(v["train"]["max_steps"].is_number_integer());
  CHECK(v["train"]["max_steps"] == 100);
  CHECK(v["task"]["train"] == "foo.tsv");  // not JSON: kept as a plain string
  CHECK(v["optim"]["betas"] == json::array({0.9, 0.99}));
  CHECK(v["task"]["eval_bleu"] == false);
  CHECK(v["task"]["spm_model"] == "quoted");
  CHECK(v["task"]["valid"] == json::array({"a.en", "a.de"}));
  CHECK(v["task"]["spm_cache"] == "");
  CHECK(raw.overridden.count("optim.lr") == 1);
  CHECK(raw.overridden.count("task.train") == 1);

  // A number out of range stays a string, which the schema then refuses as not a number.
  RawConfig huge;
  xformer::apply_override(huge, "optim.eps=1e400");
  CHECK(huge.value["optim"]["eps"] == "1e400");

  // A later override of the same key wins; its siblings stay.
  xformer::apply_override(raw, "optim.lr=1e-3");
  CHECK(v["optim"]["lr"].get<double>() == Approx(1e-3));
  CHECK(v["optim"]["betas"].size() == 2);

  // Overrides validate like file values: the resolved config holds them.
  auto resolved = xformer::resolve(raw);
  CHECK(resolved["optim"]["lr"].get<double>() == Approx(1e-3));
  CHECK(resolved["task"]["train"] == "foo.tsv");
  CHECK(resolved["task"]["valid"] == json::array({"a.en", "a.de"}));
}

TEST_CASE("malformed overrides are usage errors", "[core][config]") {
  RawConfig raw;
  for (const std::string bad : {"optim.lr", "=5", "optim..lr=1", ".lr=1"}) {
    CAPTURE(bad);
    auto e = thrown_error([&] { xformer::apply_override(raw, bad); });
    CHECK(e.exit_code() == xformer::kExitUsage);
    CHECK(e.exit_code() == 2);
  }
  CHECK(contains(thrown_error([&] { xformer::apply_override(raw, "optim.lr"); }).what(), "optim.lr"));
  // A group takes an object, never a value that would drop the file's keys of that group.
  RawConfig grouped = raw_of({{"train", {{"eval_every", 20}}}});
  for (const std::string bad : {"train=5", "train=null", "train=[1]", "train=fast"}) {
    CAPTURE(bad);
    auto e = thrown_error([&] { xformer::apply_override(grouped, bad); });
    CHECK(e.exit_code() == 2);
    CHECK(contains(e.what(), "'train' is a group of keys, not a value; set its keys (e.g. train.eval_every=...)"));
  }
  CHECK(grouped.value["train"]["eval_every"] == 20);
}

TEST_CASE("unknown keys name the key, the origin and a hint", "[core][config]") {
  SECTION("from a file, with a typo") {
    auto e = thrown_error([] { xformer::resolve(raw_of({{"optim", {{"lrr", 0.1}}}}, "my_config.json")); });
    CHECK(e.exit_code() == 2);
    const std::string m = e.what();
    CHECK(contains(m, "optim.lrr"));
    CHECK(contains(m, "my_config.json"));
    CHECK(contains(m, "did you mean 'optim.lr'"));
  }
  SECTION("from the file of an extends chain that holds it") {
    TempDir dir("config_origin");
    write(dir.str("base.json"), R"({"optim": {"lrr": 0.1}, "train": {"seed": "seven"}})");
    write(dir.str("presets/big.json"), R"({"extends": "../base.json", "optim": {"warmup_steps": 10}})");
    const auto m = std::string(thrown_error([&] { xformer::resolve(xformer::load_config_file(dir.str("presets/big.json"))); }).what());
    CHECK(contains(m, "unknown key 'optim.lrr' in '" + dir.str("presets/../base.json") + "'"));
    write(dir.str("presets/big.json"), R"({"extends": "../base.json", "optim": {"lrr": null, "lr": "fast"}})");
    const auto typed = std::string(thrown_error([&] {
      auto raw = xformer::load_config_file(dir.str("presets/big.json"));
      raw.value["optim"].erase("lrr");
      xformer::resolve(raw);
    }).what());
    CHECK(contains(typed, "'optim.lr' in '" + dir.str("presets/big.json") + "'"));  // the child's value
  }
  SECTION("from --set") {
    RawConfig raw;
    xformer::apply_override(raw, "train.max_step=5");
    const std::string m = thrown_error([&] { xformer::resolve(raw); }).what();
    CHECK(contains(m, "train.max_step"));
    CHECK(contains(m, "--set train.max_step"));
    CHECK(contains(m, "did you mean 'train.max_steps'"));
  }
  SECTION("right key in the wrong group") {
    const std::string m = thrown_error([] { xformer::resolve(raw_of({{"train", {{"lr", 0.1}}}})); }).what();
    CHECK(contains(m, "train.lr"));
    CHECK(contains(m, "did you mean 'optim.lr'"));
  }
  SECTION("nothing close: no hint") {
    const std::string m =
        thrown_error([] { xformer::resolve(raw_of({{"optim", {{"completely_unrelated_key", 1}}}})); }).what();
    CHECK(contains(m, "optim.completely_unrelated_key"));
    CHECK(!contains(m, "did you mean"));
  }
}

TEST_CASE("wrong types name the key and the expected type", "[core][config]") {
  struct Case {
    json value;
    std::string key, expected;
  };
  for (const auto& c : {Case{{{"optim", {{"warmup_steps", "many"}}}}, "optim.warmup_steps", "an integer"},
                        Case{{{"optim", {{"warmup_steps", 1.5}}}}, "optim.warmup_steps", "an integer"},
                        Case{{{"optim", {{"lr", "fast"}}}}, "optim.lr", "a number"},
                        Case{{{"task", {{"eval_bleu", 1}}}}, "task.eval_bleu", "true or false"},
                        Case{{{"optim", {{"betas", {0.9, "x"}}}}}, "optim.betas", "a list of numbers"},
                        Case{{{"task", {{"train", {"a", "b", "c"}}}}}, "task.train",
                             "a path or a list of two paths"},
                        Case{{{"model", {{"activation", 3}}}}, "model.activation", "a string"},
                        // an empty object is a value like any other, not an empty group
                        Case{{{"optim", {{"lr", json::object()}}}}, "optim.lr", "a number"},
                        // beyond int64: it would wrap to a negative number when read
                        Case{{{"train", {{"max_steps", 18446744073709551615ull}}}}, "train.max_steps", "an integer"},
                        Case{{{"model", {{"d_model", 9223372036854775808ull}}}}, "model.d_model", "an integer"}}) {
    CAPTURE(c.value.dump());
    auto e = thrown_error([&] { xformer::resolve(raw_of(c.value, "cfg.json")); });
    CHECK(e.exit_code() == 2);
    CHECK(contains(e.what(), "'" + c.key + "'"));
    CHECK(contains(e.what(), c.expected));
  }
}

TEST_CASE("string keys with choices reject other values", "[core][config]") {
  auto e = thrown_error([] { xformer::resolve(raw_of({{"optim", {{"schedule", "exponential"}}}})); });
  CHECK(e.exit_code() == 2);
  const std::string m = e.what();
  CHECK(contains(m, "optim.schedule"));
  CHECK(contains(m, "inverse_sqrt|cosine|linear|constant"));
  CHECK(contains(m, "exponential"));
  // A listed value passes.
  CHECK(xformer::resolve(raw_of({{"optim", {{"schedule", "cosine"}}}}))["optim"]["schedule"] == "cosine");
}

TEST_CASE("numbers outside a key's bounds are config errors naming the key and the bound", "[core][config]") {
  struct Case {
    json value;
    std::string key, bound;
  };
  for (const auto& c : {Case{{{"train", {{"log_every", 0}}}}, "train.log_every", "at least 1"},
                        Case{{{"train", {{"update_freq", -2}}}}, "train.update_freq", "at least 1"},
                        Case{{{"optim", {{"lr", -0.001}}}}, "optim.lr", "at least 0"},
                        Case{{{"optim", {{"betas", {0.9, -0.5}}}}}, "optim.betas", "at least 0"},
                        Case{{{"train", {{"dist_bucket_mb", 0}}}}, "train.dist_bucket_mb", "at least 0.001"},
                        Case{{{"model", {{"d_model", 0}}}}, "model.d_model", "at least 1"},
                        Case{{{"model", {{"dropout", 1.5}}}}, "model.dropout", "be below 1"},
                        Case{{{"optim", {{"betas", {0.9, 1.0}}}}}, "optim.betas", "be below 1"},
                        Case{{{"optim", {{"betas", {0.9}}}}}, "optim.betas", "have 2 elements"}}) {
    CAPTURE(c.value.dump());
    auto e = thrown_error([&] { xformer::resolve(raw_of(c.value, "cfg.json")); });
    CHECK(e.exit_code() == 2);
    CHECK(contains(e.what(), "'" + c.key + "' in 'cfg.json'"));
    CHECK(contains(e.what(), c.bound));
  }
  // Heads split the model width evenly.
  auto e = thrown_error([&] { xformer::resolve(raw_of({{"model", {{"d_model", 64}, {"heads", 3}}}})); });
  CHECK(e.exit_code() == 2);
  CHECK(contains(e.what(), "'model.d_model' (64) must be divisible by 'model.heads' (3)"));
  // The bounds themselves pass.
  auto ok = xformer::resolve(raw_of({{"train", {{"log_every", 1}, {"eval_every", 0}}}, {"optim", {{"lr", 0}}}}));
  CHECK(ok["train"]["log_every"] == 1);
  CHECK(ok["optim"]["lr"] == 0.0);
}

TEST_CASE("resolve fills in defaults and converts ints for float keys", "[core][config]") {
  auto resolved = xformer::resolve(raw_of({{"task", {{"name", "translation"}}}}));
  // Defaults from the trainer, the task and the architecture.
  CHECK(resolved["model"]["arch"] == "transformer");
  CHECK(resolved["optim"]["lr"].get<double>() == Approx(5e-4));
  CHECK(resolved["optim"]["betas"] == json::array({0.9, 0.98}));
  CHECK(resolved["optim"]["schedule"] == "inverse_sqrt");
  CHECK(resolved["train"]["seed"] == 1);
  CHECK(resolved["task"]["beam"] == 4);
  CHECK(resolved["model"]["d_model"] == 512);
  CHECK(resolved["model"]["norm"] == "post");
  // Every declared key is present in the result.
  for (const auto& path : xformer::schema_for(raw_of({})).paths()) {
    CAPTURE(path);
    CHECK_NOTHROW(xformer::at_path(resolved, path));
  }

  // "lr": 1 is a valid float and is stored as one; an explicit null means the default.
  auto ints = xformer::resolve(raw_of({{"optim", {{"lr", 1}, {"warmup_init_lr", nullptr}}}}));
  CHECK(ints["optim"]["lr"].is_number_float());
  CHECK(ints["optim"]["lr"].get<double>() == 1.0);
  CHECK(ints["optim"]["warmup_init_lr"].get<double>() == 0.0);
  // Ints are accepted in float lists too.
  auto betas = xformer::resolve(raw_of({{"optim", {{"betas", {0, 0.5}}}}}));
  CHECK(betas["optim"]["betas"][0].get<double>() == 0.0);
}

TEST_CASE("train.best_metric must be a metric the task reports", "[core][config][registry]") {
  auto e = thrown_error([] {
    xformer::check_best_metric(
        xformer::resolve(raw_of({{"task", {{"name", "translation"}}}, {"train", {{"best_metric", "blue"}}}})));
  });
  CHECK(e.exit_code() == 2);
  CHECK(contains(e.what(), "'train.best_metric' is 'blue', which the translation evaluation does not report"));
  CHECK(contains(e.what(), "did you mean 'bleu'?"));
  // What is reported depends on the config: no BLEU without decoding.
  CHECK_NOTHROW(xformer::check_best_metric(
      xformer::resolve(raw_of({{"task", {{"name", "translation"}}}, {"train", {{"best_metric", "bleu"}}}}))));
  CHECK_THROWS(xformer::check_best_metric(xformer::resolve(
      raw_of({{"task", {{"name", "translation"}, {"eval_bleu", false}}}, {"train", {{"best_metric", "bleu"}}}}))));
}

TEST_CASE("an unknown task.name is a config error with a hint", "[core][config][registry]") {
  auto e = thrown_error([] { xformer::resolve(raw_of({{"task", {{"name", "translaton"}}}})); });
  CHECK(e.exit_code() == 2);
  const std::string m = e.what();
  CHECK(contains(m, "translaton"));
  CHECK(contains(m, "did you mean 'translation'"));
  CHECK(contains(m, "known: "));

  auto arch = thrown_error([] { xformer::resolve(raw_of({{"model", {{"arch", "transfomer"}}}})); });
  CHECK(contains(arch.what(), "did you mean 'transformer'"));
  // task.name must be a string.
  CHECK(thrown_error([] { xformer::resolve(raw_of({{"task", {{"name", 5}}}})); }).exit_code() == 2);
}

TEST_CASE("closest_match and at_path", "[core][config]") {
  CHECK(xformer::closest_match("optim.lrr", {"optim.lr", "optim.eps"}) == "optim.lr");
  CHECK(xformer::closest_match("zzzzzzzzzz", {"optim.lr", "optim.eps"}).empty());
  json j = {{"a", {{"b", 3}}}};
  CHECK(xformer::at_path(j, "a.b") == 3);
  auto e = thrown_error([&] { xformer::at_path(j, "a.c"); });
  CHECK(contains(e.what(), "a.c"));
  xformer::set_path(j, "a.d.e", 4);
  CHECK(j["a"]["d"]["e"] == 4);
  CHECK(j["a"]["b"] == 3);
}

TEST_CASE("an empty group is no key at all", "[core][config]") {
  xformer::RawConfig raw;
  raw.value = xformer::json::parse(R"({"model": {}, "task": {"name": "translation"}})");
  auto resolved = xformer::resolve(raw);
  CHECK(resolved["model"]["d_model"] == 512);  // the default, not an "unknown key 'model'" error
}


TEST_CASE("a config file nests its keys: a dotted name in a file is an error", "[core][config]") {
  TempDir dir("config_dotted");
  write(dir.str("c.json"), R"({"optim.lr": 0.1})");
  auto e = thrown_error([&] { xformer::load_config_file(dir.str("c.json")); });
  CHECK(e.exit_code() == 2);
  CHECK(contains(e.what(), "key 'optim.lr' in '" + dir.str("c.json") + "': nest it"));
  write(dir.str("d.json"), R"({"optim": {"lr": 0.1, "warmup.steps": 3}})");
  CHECK(contains(thrown_error([&] { xformer::load_config_file(dir.str("d.json")); }).what(), "'optim.warmup.steps'"));
}

TEST_CASE("a key given twice in one object is an error naming it", "[core][config]") {
  TempDir dir("config_twice");
  write(dir.str("c.json"), R"({"train": {"seed": 1, "max_steps": 5, "seed": 2}, "optim": {"seed": 3}})");
  auto e = thrown_error([&] { xformer::load_config_file(dir.str("c.json")); });
  CHECK(e.exit_code() == 2);
  CHECK(contains(e.what(), "key \"seed\" appears twice in one object"));
  write(dir.str("ok.json"), R"({"train": {"seed": 1}, "optim": {"lr": 1}, "task": {"seed": 1}})");  // same name, other objects
  CHECK_NOTHROW(xformer::load_config_file(dir.str("ok.json")));
}

TEST_CASE("--set with an object merges it into the group", "[core][config]") {
  RawConfig raw = raw_of({{"optim", {{"lr", 0.5}, {"warmup_steps", 10}}}});
  xformer::apply_override(raw, R"(optim={"lr": 1, "min_lr": 0.1})");
  const auto resolved = xformer::resolve(raw);
  CHECK(resolved["optim"]["lr"] == 1.0);
  CHECK(resolved["optim"]["min_lr"] == 0.1);
  CHECK(resolved["optim"]["warmup_steps"] == 10);  // kept, not replaced by the default
  // Its keys are checked as --set keys, whether the group was in the file or not.
  xformer::apply_override(raw, R"(optim={"lr": "fast"})");
  CHECK(contains(thrown_error([&] { xformer::resolve(raw); }).what(), "'optim.lr' in --set optim.lr must be a number"));
  RawConfig fresh = raw_of(json::object(), "cfg.json");
  xformer::apply_override(fresh, R"(train={"seed": "one"})");
  CHECK(contains(thrown_error([&] { xformer::resolve(fresh); }).what(), "'train.seed' in --set train.seed must be"));
  // A value meant as JSON (an object or a list) that is not valid is an error, not a string.
  CHECK(contains(thrown_error([&] { xformer::apply_override(fresh, R"(optim={"lr": 1, "lr": 2})"); }).what(),
                 "appears twice"));
  const auto glob = thrown_error([&] { xformer::apply_override(fresh, "task.train=[ab]*.png"); });
  CHECK(glob.exit_code() == 2);
  CHECK(contains(glob.what(), "given quoted: task.train='\"[ab]*.png\"'"));
  xformer::apply_override(fresh, "task.train=\"[ab]*.png\"");
  CHECK(fresh.value["task"]["train"] == "[ab]*.png");
}

TEST_CASE("every config under configs/ resolves against the schema and passes train's checks", "[core][config]") {
  int checked = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(xformer::testing::source_path("configs"))) {
    if (e.path().extension() != ".json") continue;
    INFO(e.path().string());
    auto config = xformer::resolve(xformer::load_config_file(e.path().string()));
    CHECK(config.at("task").contains("name"));
    // What `xformer train` checks before it starts: best_metric reported, schedule, limits.
    CHECK_NOTHROW(xformer::train::check_training_config(config));
    ++checked;
  }
  CHECK(checked >= 14);
}
