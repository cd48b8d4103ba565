"""The HTML pages, one module per page or group of small pages; all built with edged.web.html."""
