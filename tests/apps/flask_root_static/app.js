fetch("/api/data")
  .then(function (r) { return r.json(); })
  .then(function (j) { document.getElementById("data").textContent = j.message; });
