#include "xformer/report/attention_page.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "xformer/core/atomic_file.h"
#include "xformer/core/error.h"

namespace xformer::report {

namespace {

// The page: a head selector, a canvas with one cell per (query, key), and a hover line.
// Weights are stored as integers 0..255 (sqrt-scaled so that small weights stay visible).
constexpr const char* kPage = R"HTML(<!doctype html>
<html><head><meta charset="utf-8"><title>TITLE</title>
<style>body{font-family:sans-serif;margin:1em}canvas{image-rendering:pixelated;border:1px solid #888}</style>
</head><body>
<h3>TITLE</h3>
<p>Row = query position, column = key position; darker = more attention (sqrt scale).
Head: <select id="head"></select> <span id="info"></span></p>
<canvas id="map"></canvas>
<script>
const data = DATA;
const T = data.length, H = data.heads, cell = Math.max(1, Math.floor(768 / T));
const canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
canvas.width = canvas.height = T * cell;
const select = document.getElementById("head");
for (let h = 0; h < H; ++h) select.add(new Option("head " + h, h));
function draw() {
  const h = +select.value, w = data.weights[h];
  for (let i = 0; i < T; ++i)
    for (let j = 0; j < T; ++j) {
      const v = 255 - w[i * T + j];
      ctx.fillStyle = "rgb(" + v + "," + v + ",255)";
      ctx.fillRect(j * cell, i * cell, cell, cell);
    }
}
canvas.onmousemove = e => {
  const r = canvas.getBoundingClientRect();
  const i = Math.floor((e.clientY - r.top) / cell), j = Math.floor((e.clientX - r.left) / cell);
  if (i < 0 || j < 0 || i >= T || j >= T) return;
  const w = data.weights[+select.value][i * T + j] / 255;
  document.getElementById("info").textContent =
      "query " + i + " " + data.labels[i] + " -> key " + j + " " + data.labels[j] + ": " + (w * w).toFixed(3);
};
select.onchange = draw;
draw();
</script></body></html>
)HTML";

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

}  // namespace

void write_attention_page(const std::string& path, const std::string& title,
                          const std::vector<float>& weights, int heads, int length,
                          const std::vector<std::string>& labels) {
  if (weights.size() != static_cast<size_t>(heads) * length * length ||
      labels.size() != static_cast<size_t>(length))
    throw Error("attention page: " + std::to_string(weights.size()) + " weights and " +
                std::to_string(labels.size()) + " labels for " + std::to_string(heads) +
                " heads of length " + std::to_string(length));
  nlohmann::json data;
  data["heads"] = heads;
  data["length"] = length;
  data["labels"] = labels;
  data["weights"] = nlohmann::json::array();
  for (int h = 0; h < heads; ++h) {
    std::vector<int> q(static_cast<size_t>(length) * length);
    for (size_t k = 0; k < q.size(); ++k) {
      const float w = std::clamp(weights[h * q.size() + k], 0.0f, 1.0f);
      q[k] = static_cast<int>(std::lround(std::sqrt(w) * 255));
    }
    data["weights"].push_back(q);
  }
  std::string page = kPage;
  replace_all(page, "TITLE", title);
  replace_all(page, "DATA", data.dump());
  write_file_atomically(path, page);
}

}  // namespace xformer::report
