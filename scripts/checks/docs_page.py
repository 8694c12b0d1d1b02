"""The docs page in a real browser (Debian's chromium, headless, through
chromedriver): it loads with no request leaving the service, lists every
operation of the OpenAPI document, and "Try it out" on /air_quality?limit=1
shows a 200 with a row. Saves a screenshot as evidence.

    docs_page.py BASE_URL SCREENSHOT_PATH
"""

import json
import os
import sys
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

base, screenshot = sys.argv[1].rstrip("/"), sys.argv[2]
os.environ["SE_OFFLINE"] = "true"  # never let Selenium fetch a driver

with urllib.request.urlopen(f"{base}/openapi.json") as response:
    document = json.load(response)
operations = {
    op["operationId"]: (path, op["tags"][0])
    for path, item in document["paths"].items()
    for op in item.values()
}

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1280,1800"):
    options.add_argument(argument)
driver = webdriver.Chrome(
    service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
    options=options,
)
wait = WebDriverWait(driver, 30)
try:
    driver.get(f"{base}/docs")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(operations))
    listed = {e.get_attribute("id") for e in driver.find_elements(By.CSS_SELECTOR, ".opblock")}
    for operation_id, (path, tag) in operations.items():
        assert f"operations-{tag}-{operation_id}" in listed, f"{path} is not listed: {listed}"

    block = driver.find_element(By.ID, "operations-measurements-listMeasurements")
    block.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    wait.until(lambda d: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    limit = wait.until(lambda d: block.find_element(
        By.CSS_SELECTOR, "tr[data-param-name='limit'] input"))
    # Swagger UI fills in the parameters' examples: clear them, so that the
    # request is /air_quality?limit=1 and nothing else.
    for field in block.find_elements(By.CSS_SELECTOR, "tr[data-param-name] input"):
        field.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    limit.send_keys("1")
    block.find_element(By.CSS_SELECTOR, ".execute").click()
    status = wait.until(lambda d: block.find_element(
        By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"))
    wait.until(lambda d: status.text.strip())
    body = block.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre").text
    asked = block.find_element(By.CSS_SELECTOR, ".request-url pre").text
    assert asked == f"{base}/air_quality?limit=1", f"asked {asked!r}"
    assert status.text.strip().startswith("200"), f"status {status.text!r}"
    rows = json.loads(body)
    assert len(rows) == 1 and "time_instant" in rows[0], body

    origin = base.split("//", 1)[1]
    requested = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    elsewhere = [url for url in requested if url.split("//", 1)[1].split("/", 1)[0] != origin]
    assert not elsewhere, f"the page asked other hosts: {elsewhere}"

    driver.execute_script("arguments[0].scrollIntoView()", block)
    driver.save_screenshot(screenshot)
    print(f"docs page: {len(operations)} operations listed; try it out on {asked}: "
          f"{status.text.strip()} with {len(rows)} row; {len(requested)} requests, all to {origin}; "
          f"screenshot {screenshot}")
finally:
    driver.quit()
