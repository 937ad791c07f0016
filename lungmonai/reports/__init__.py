"""Reports for readers: Lung-RADS categories and HTML pages of the analysed CTs."""
