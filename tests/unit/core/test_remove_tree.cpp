// remove_tree: a folder and all it holds, symbolic links removed but never followed.
#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "xformer/core/error.h"
#include "xformer/core/remove_tree.h"

namespace fs = std::filesystem;
using xformer::remove_tree;
using xformer::remove_tree_noexcept;
using xformer::testing::TempDir;

TEST_CASE("remove_tree removes nested folders and files, not what links point to", "[core]") {
  TempDir dir("remove_tree");
  const fs::path tree = dir.path() / "tree", outside = dir.path() / "outside";
  fs::create_directories(tree / "a" / "b" / "c");
  fs::create_directories(tree / "empty");
  fs::create_directories(outside);
  std::ofstream(tree / "top.txt") << "x";
  std::ofstream(tree / "a" / "b" / "c" / "deep.bin") << "y";
  std::ofstream(outside / "keep.txt") << "z";
  fs::create_directory_symlink(outside, tree / "a" / "link_to_folder");
  fs::create_symlink(outside / "keep.txt", tree / "link_to_file");
  fs::create_symlink(dir.path() / "nowhere", tree / "dangling");
  for (int i = 0; i < 300; ++i) std::ofstream(tree / "a" / ("many_" + std::to_string(i))) << i;

  remove_tree(tree.string());
  CHECK_FALSE(fs::exists(fs::symlink_status(tree)));
  CHECK(fs::exists(outside / "keep.txt"));  // the links went, not their targets

  // A file, a link and a path that is not there.
  std::ofstream(dir.path() / "file") << "f";
  remove_tree((dir.path() / "file").string());
  CHECK_FALSE(fs::exists(dir.path() / "file"));
  fs::create_directory_symlink(outside, dir.path() / "link");
  remove_tree((dir.path() / "link").string());
  CHECK_FALSE(fs::exists(fs::symlink_status(dir.path() / "link")));
  CHECK(fs::exists(outside / "keep.txt"));
  fs::create_directory_symlink(outside, dir.path() / "link");
  remove_tree((dir.path() / "link").string() + "//");  // with a trailing slash, still the link
  CHECK_FALSE(fs::exists(fs::symlink_status(dir.path() / "link")));
  CHECK(fs::exists(outside / "keep.txt"));
  CHECK_NOTHROW(remove_tree((dir.path() / "absent").string()));
  CHECK(remove_tree_noexcept((dir.path() / "absent").string()));
}

TEST_CASE("remove_tree names what it cannot remove", "[core]") {
  TempDir dir("remove_tree_error");
  std::ofstream(dir.path() / "file") << "f";
  const std::string below_a_file = (dir.path() / "file" / "child").string();
  const auto e = xformer::testing::thrown_error([&] { remove_tree(below_a_file); });
  CHECK_THAT(e.what(), Catch::Contains(below_a_file) && Catch::Contains("Not a directory"));
  CHECK(e.exit_code() == xformer::kExitFailure);
  CHECK_FALSE(remove_tree_noexcept(below_a_file));
  // "." and ".." name no entry of their own: refused before anything inside goes.
  for (const char* name : {".", ".."}) {
    CAPTURE(name);
    CHECK_THROWS(remove_tree((dir.path() / name).string()));
    CHECK(fs::exists(dir.path() / "file"));
  }
}
